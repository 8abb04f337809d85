"""CUB-200-2011 (Wah et al. 2011), the OOD companion of miniImageNet: 84x84, a ``valid``
and a ``test`` split of 50 bird classes each, as the original.

Source: ``CUB_200_2011.tgz`` on learn2learn's Zenodo mirror (the Caltech URL the original
used has moved), with the md5 the Zenodo API publishes. learn2learn's ``CUBirds200`` is not
used to read it: its splits are Meta-Dataset's 140/30/30, not the original's, and its
loader makes greyscale images RGB where the original drops them; listing a class folder
is all the parsing needed.

Splits: the original fixed them by two pickled lists of image paths (``val_cls.pkl``,
``test_cls.pkl``); they name every image of the classes below, which are every fourth
class of CUB, numbers 2, 6, 10, ... (valid) and 4, 8, 12, ... (test). As the original,
images are resized to 84x84 without cropping and images that are not RGB (a few greyscale
photos) are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from taml.data.download import GZIP_MAGIC, download, extract
from taml.data.registry import DatasetError, dataset_dir
from taml.data.sources import (
    already_prepared,
    check_disjoint,
    load_image_files,
    mirror,
    raw_dir,
    write_store,
    zenodo_file,
)
from taml.data.store import make_split

NAME = "cub"
ZENODO = "https://zenodo.org"  # $TAML_MIRROR_CUB replaces it
RECORD = "8000562"  # learn2learn's mirror of the Caltech archive
ARCHIVE = "CUB_200_2011.tgz"
IMAGE_SIZE = 84
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}

CLASSES = {
    "valid": """
        002.Laysan_Albatross 006.Least_Auklet 010.Red_winged_Blackbird 014.Indigo_Bunting
        018.Spotted_Catbird 022.Chuck_will_Widow 026.Bronzed_Cowbird 030.Fish_Crow
        034.Gray_crowned_Rosy_Finch 038.Great_Crested_Flycatcher 042.Vermilion_Flycatcher
        046.Gadwall 050.Eared_Grebe 054.Blue_Grosbeak 058.Pigeon_Guillemot 062.Herring_Gull
        066.Western_Gull 070.Green_Violetear 074.Florida_Jay 078.Gray_Kingbird
        082.Ringed_Kingfisher 086.Pacific_Loon 090.Red_breasted_Merganser
        094.White_breasted_Nuthatch 098.Scott_Oriole 102.Western_Wood_Pewee
        106.Horned_Puffin 110.Geococcyx 114.Black_throated_Sparrow 118.House_Sparrow
        122.Harris_Sparrow 126.Nelson_Sharp_tailed_Sparrow 130.Tree_Sparrow
        134.Cape_Glossy_Starling 138.Tree_Swallow 142.Black_Tern 146.Forsters_Tern
        150.Sage_Thrasher 154.Red_eyed_Vireo 158.Bay_breasted_Warbler 162.Canada_Warbler
        166.Golden_winged_Warbler 170.Mourning_Warbler 174.Palm_Warbler
        178.Swainson_Warbler 182.Yellow_Warbler 186.Cedar_Waxwing
        190.Red_cockaded_Woodpecker 194.Cactus_Wren 198.Rock_Wren
    """.split(),
    "test": """
        004.Groove_billed_Ani 008.Rhinoceros_Auklet 012.Yellow_headed_Blackbird
        016.Painted_Bunting 020.Yellow_breasted_Chat 024.Red_faced_Cormorant
        028.Brown_Creeper 032.Mangrove_Cuckoo 036.Northern_Flicker
        040.Olive_sided_Flycatcher 044.Frigatebird 048.European_Goldfinch
        052.Pied_billed_Grebe 056.Pine_Grosbeak 060.Glaucous_winged_Gull
        064.Ring_billed_Gull 068.Ruby_throated_Hummingbird 072.Pomarine_Jaeger
        076.Dark_eyed_Junco 080.Green_Kingfisher 084.Red_legged_Kittiwake
        088.Western_Meadowlark 092.Nighthawk 096.Hooded_Oriole 100.Brown_Pelican
        104.American_Pipit 108.White_necked_Raven 112.Great_Grey_Shrike
        116.Chipping_Sparrow 120.Fox_Sparrow 124.Le_Conte_Sparrow 128.Seaside_Sparrow
        132.White_crowned_Sparrow 136.Barn_Swallow 140.Summer_Tanager 144.Common_Tern
        148.Green_tailed_Towhee 152.Blue_headed_Vireo 156.White_eyed_Vireo
        160.Black_throated_Blue_Warbler 164.Cerulean_Warbler 168.Kentucky_Warbler
        172.Nashville_Warbler 176.Prairie_Warbler 180.Wilson_Warbler
        184.Louisiana_Waterthrush 188.Pileated_Woodpecker 192.Downy_Woodpecker
        196.House_Wren 200.Common_Yellowthroat
    """.split(),
}


def prepare(data_root: Path, force: bool = False) -> Path:
    if already_prepared(NAME, data_root, force):
        return dataset_dir(NAME, data_root)
    raw = raw_dir(NAME, data_root)
    url, size, md5 = zenodo_file(mirror(NAME, ZENODO), RECORD, ARCHIVE)
    archive = download(url, raw / ARCHIVE, size=size, md5=md5, magic=GZIP_MAGIC,
                       reserve=size or 1_200_000_000)
    images_dir = extract(archive, raw, force=force) / "CUB_200_2011" / "images"
    splits = {}
    for split, classes in CLASSES.items():
        paths, labels = [], []
        for label, class_name in enumerate(classes):
            folder = images_dir / class_name
            if not folder.is_dir():
                raise DatasetError(f"{folder} is missing: {archive.name} is not CUB-200-2011 "
                                   "as expected; delete it and run again")
            found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            paths += found
            labels += [label] * len(found)
        images, kept = load_image_files(paths, IMAGE_SIZE, desc=f"{NAME} {split}",
                                        rgb_only=True)
        splits[split] = make_split(images, np.array(labels)[kept], classes)
    check_disjoint(NAME, splits)
    return write_store(NAME, data_root, splits)
