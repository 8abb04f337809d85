"""README.md's section on `python -m experiments.demo`, and docs/demo.md (the rest of that
section, moved there), state the settings the demo really runs; the README's code runs.

Each paragraph describes one command: the default one, or the one it names with
``--n_train_iters N``. Every number the paragraph states about that command's schedule
(iterations, validation every K iterations on E episodes, test episodes, episode shape,
posterior samples) must be the demo's setting for it (:func:`experiments.demo.demo_settings`).
The README's paragraph that introduces the demo states all of them.
"""

from __future__ import annotations

import re

import pytest

from experiments import demo

from .test_config import ROOT

README = ROOT / "README.md"
DEMO_DOC = ROOT / "docs" / "demo.md"  # the demo section's details, moved out of the README


def demo_section() -> str:
    text = README.read_text()
    start = text.find("## The demo")
    assert start >= 0, "README.md has no '## The demo' section"
    end = text.find("\n## ", start + 1)
    section = text[start : end if end > 0 else len(text)]
    assert "experiments.demo" in section
    return section


def demo_doc() -> str:
    text = DEMO_DOC.read_text()
    assert "experiments.demo" in text
    return text


def paragraphs(text: str | None = None) -> list[tuple[int, str]]:
    """(iterations of the command it describes, paragraph) for each paragraph of prose of
    ``text`` (default: the README's demo section)."""
    out = []
    for paragraph in re.split(r"\n\s*\n", demo_section() if text is None else text):
        if paragraph.lstrip().startswith(("|", "#", "```")):
            continue  # tables, the heading and code
        flat = " ".join(paragraph.split())
        named = re.search(r"--n_train_iters (\d+)", flat)
        out.append((int(named.group(1)) if named else demo.DEFAULT_ITERS, flat))
    return out


def numbers(pattern: str, text: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(pattern, text)]


VALIDATION = r"validat\w* every (\d+) iterations"
VALIDATION_EPISODES = r"validat\w* every \d+ iterations on (\d+) (?:validation )?episodes"
TEST_EPISODES = (r"(?:on (\d+) (?:test )?episodes of each|(\d+) test episodes"
                 r"|tests? (?:on )?(\d+)\b)")


def stated_test_episodes(text: str) -> list[int]:
    return [int(next(g for g in m.groups() if g)) for m in re.finditer(TEST_EPISODES, text)]


def default_paragraph() -> str:
    """The paragraph that introduces the demo: the one naming its iterations 'each'."""
    found = [p for _, p in paragraphs() if re.search(r"for \d+ iterations each", p)]
    assert found, "README's demo section no longer says 'for N iterations each'"
    return found[0]


def test_the_readme_states_the_default_demo_settings():
    text, s = default_paragraph(), demo.demo_settings()
    assert numbers(r"for (\d+) iterations each", text) == [s.n_train_iters]
    assert numbers(VALIDATION, text) == [s.val_freq], "validation frequency"
    assert numbers(VALIDATION_EPISODES, text) == [s.n_val_episodes], "validation episodes"
    assert stated_test_episodes(text) == [s.n_test_episodes], "test episodes"
    stated = {"way": r"(\d+)-way", "max_shot": r"1[–-](\d+) shots", "query":
              r"(\d+) quer(?:y|ies) per class", "metabatch": r"meta-batch (\d+)",
              "n_steps": r"(\d+) inner steps"}
    for name, pattern in stated.items():
        assert numbers(pattern, text) == [getattr(s, name)], name
    for method in demo.METHODS:
        assert method in text, f"the demo also runs {method}"
    assert numbers(r"(\d+) (?:MC|Monte Carlo) samples", text) == [s.n_mc_samples], \
        "how Bayesian TAML is tested"


@pytest.mark.parametrize("where", ["README.md", "docs/demo.md"])
def test_every_schedule_the_section_states_is_the_one_its_command_runs(where):
    checked = 0
    for n_iters, text in paragraphs(demo_section() if where == "README.md" else demo_doc()):
        s = demo.demo_settings(n_iters)
        for value in numbers(VALIDATION, text):
            assert value == s.val_freq, f"{n_iters} iterations validate every {s.val_freq}"
            checked += 1
        for value in numbers(VALIDATION_EPISODES, text):
            assert value == s.n_val_episodes, f"{n_iters} iterations validate on " \
                                              f"{s.n_val_episodes} episodes"
        for value in stated_test_episodes(text):
            assert value == s.n_test_episodes, f"the demo tests on {s.n_test_episodes}"
            checked += 1
    assert checked >= 2


@pytest.mark.parametrize("where", ["README.md", "docs/demo.md"])
def test_the_longer_run_the_demo_points_to_is_the_one_the_readme_describes(where):
    text = demo_section() if where == "README.md" else demo_doc()
    longer = [n for n, _ in paragraphs(text) if n != demo.DEFAULT_ITERS]
    assert demo.LONGER_ITERS in longer, f"{where} has no --n_train_iters {demo.LONGER_ITERS}"
    note = demo.schedule_note(demo.demo_settings(demo.LONGER_ITERS))
    assert f"--n_train_iters {demo.LONGER_ITERS}" in note


def test_bayesian_taml_is_tested_with_the_runfiles_posterior_samples():
    script = (ROOT / "runfiles" / "experiment.sh").read_text()
    values = set(numbers(r"--n_mc_samples (\d+)", script))
    assert values == {demo.MC_SAMPLES}


@pytest.mark.parametrize("n_iters", [demo.DEFAULT_ITERS, demo.LONGER_ITERS])
def test_the_demo_flags_are_its_settings(n_iters):
    s = demo.demo_settings(n_iters)
    flags = demo.demo_flags(s)
    value = {flags[i]: flags[i + 1] for i in range(0, len(flags), 2)}
    assert int(value["--n_train_iters"]) == s.n_train_iters == n_iters
    assert int(value["--val_freq"]) == s.val_freq
    assert int(value["--n_val_episodes"]) == s.n_val_episodes
    assert int(value["--n_test_episodes"]) == s.n_test_episodes
    assert float(value["--inner_lr"]) == s.inner_lr and int(value["--seed"]) == s.seed


def test_the_readmes_library_snippet_runs_as_printed():
    """The README's ``python`` block (taml as a library) runs and does what its comments
    say: the meta-gradient reaches the user's backbone and the inference network, the
    meta-test gives a distribution per query, and MW-Net's step trains the user's net."""
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "README.md should have one python block, the library snippet"

    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    import torch

    learner = namespace["learner"]
    assert torch.isfinite(namespace["objective"].loss)
    backbone_grads = [p.grad for p in learner.backbone.parameters()]
    assert all(g is not None for g in backbone_grads) and any(g.abs().sum() > 0
                                                              for g in backbone_grads)
    assert learner.inference is not None
    assert any(p.grad is not None for p in learner.inference.parameters())
    probs = namespace["probs"]
    assert probs.shape == (2, 25, 5)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 25), atol=1e-5)
    stats = namespace["stats"]
    assert stats.loss > 0 and namespace["reweight"].steps_taken == 1
