"""What a fresh start (no ``checkpoint.pt``) may delete in its ``--savedir``: the records of a
taml run of its own family, recognised by their content (the ``family`` key of a
``config.json`` and of ``train.log``'s first line, taml's file names, the CSV's header,
a checkpoint's own check), never by their name alone: ``--force`` once deleted a user's
``plot.png`` and a ``config.json`` taml never wrote.

Three starts replace the records they find (and the caller says so on stderr): ``--force``;
the same command started again (the folder's ``config.json`` is this command's); and any
command of the family in a folder whose run stopped before its first checkpoint (no model
and no test there: its records hold nothing a new run could lose, and the stop's advice,
"lower --lr and rerun", "add --no_chance_check", must work as printed; so must the same
command after a crash that left only an empty ``train.log``). Any other start in
a folder with records is refused, and so is ``--force`` in a folder holding files that are
not a taml run's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from taml.run.checkpoint import LATEST, CheckpointError, load
from taml.run.folder import RunDirError

# the first column of each family's train_metrics.csv (taml.episodic.train.METRIC_COLUMNS,
# taml.biased.records.METRIC_COLUMNS)
CSV_FIRST_COLUMN = {"episodic": "iteration", "biased": "step"}
# what a run leaves that is a model or a result: a folder holding one is not "stopped
# before its first checkpoint"
MODELS_AND_RESULTS = ("best.pt", "test.json", "test_step*")
# the files of a folder that are no run's records: the lock (kept by RunLock) and the
# checkpoints (a fresh start has none; a resume never asks)
NOT_RECORDS = (".lock", "checkpoint.pt")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def previous_records(savedir: Path | str, records: Iterable[str], config: dict,
                     force: bool) -> list[Path]:
    """The files of another run that a fresh start in ``savedir`` would otherwise mix with
    its own (an old ``best.pt`` that meta-test would read, a ``train.log`` appended to...):
    ``records`` are the family's glob patterns of taml's file names. Returned for
    :func:`remove_records` when this start may replace them (module docstring); otherwise
    the start is refused with one line naming them. Empty when a checkpoint is there to
    resume (the resume checks it)."""
    savedir = Path(savedir)
    if (savedir / LATEST).exists() or not savedir.is_dir():
        return []
    family = config.get("family", "episodic")
    found = sorted({path for pattern in records for path in savedir.glob(pattern)})
    foreign = [path for path in found if not is_taml_record(path, family)]
    if force:
        listed = set(found)
        foreign += [path for path in sorted(savedir.iterdir())
                    if path not in listed and path.name not in NOT_RECORDS
                    and not _temporary(path.name)]
    if foreign:
        names = _names(foreign)
        raise RunDirError(f"--savedir {savedir} holds files that are not a taml {family} "
                          f"run's records ({names}); taml deletes only its own: move them "
                          "out, or choose another --savedir")
    if not found or force:
        return found
    # every record found is this family's (checked above): without a model or a result
    # among them, the run stopped before its first checkpoint and holds nothing to lose
    if _saved_config(savedir) == config or not any(
            path.match(pattern) for path in found for pattern in MODELS_AND_RESULTS):
        return found
    raise RunDirError(f"--savedir {savedir} holds another run's records ({_names(found)}) but "
                      "no checkpoint.pt to resume; a new run would mix with them: choose "
                      "another --savedir, or add --force to delete them and start afresh")


def _temporary(name: str) -> bool:
    """A temporary file of taml's atomic writes (``taml.run.folder``: ``.<name>.*.tmp``, and
    the writability probe ``.taml-write-test.*``), left by a killed write."""
    return name.startswith(".") and (name.endswith(".tmp") or name.startswith(".taml-"))


def _names(paths: list[Path]) -> str:
    more = f" and {len(paths) - 4} more" if len(paths) > 4 else ""
    return ", ".join(path.name for path in paths[:4]) + more


def _saved_config(savedir: Path) -> dict | None:
    try:
        return json.loads((savedir / "config.json").read_text())
    except (OSError, ValueError):
        return None


def _is_taml_config(config, family: str) -> bool:
    """A config taml wrote for ``family``: its ``family`` key, or, for episodic runs saved
    before the key existed, the fields every such config has."""
    if not isinstance(config, dict):
        return False
    if "family" in config:
        return config["family"] == family
    return family == "episodic" and {"way", "n_train_iters", "id_dataset"} <= set(config)


def _first_line(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().strip()
    except (OSError, UnicodeDecodeError):
        return None


def is_taml_record(path: Path, family: str) -> bool:
    """Whether ``path`` (named like one of the family's records) was written by a taml run
    of ``family``, judged by its content."""
    name = path.name
    if path.is_dir():  # tensorboard/: the event files torch's SummaryWriter writes
        return not path.is_symlink() and all(
            p.name.startswith("events.out.tfevents") for p in path.rglob("*") if p.is_file())
    if not path.is_file():
        return False
    if name == "config.json":
        return _is_taml_config(_saved_config(path.parent), family)
    if name == "train.log":
        if path.stat().st_size == 0:  # an empty log (a crash before its first line)
            return True
        try:
            return _is_taml_config(json.loads(_first_line(path) or ""), family)
        except ValueError:
            return False
    if name == "train_metrics.csv":
        line = _first_line(path)
        return line is not None and line.split(",")[0] == CSV_FIRST_COLUMN.get(family)
    if name.endswith(".json"):
        try:
            return isinstance(json.loads(path.read_text(encoding="utf-8")), dict | list)
        except (OSError, ValueError):
            return False
    if name.endswith(".log"):  # a meta-test's log
        return (_first_line(path) or "").startswith("Meta-test model at iteration")
    if name.endswith(".png"):
        with open(path, "rb") as handle:
            return handle.read(len(PNG_MAGIC)) == PNG_MAGIC
    if name.endswith(".pt"):

        try:
            load(path, family=family)
        except CheckpointError:
            return False
        return True
    return False


def remove_records(paths: list[Path]) -> None:
    """Deletes what :func:`previous_records` returned (files, and folders such as
    ``tensorboard/``)."""
    import shutil

    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
