"""Parents whose metadata lies or has the wrong shape (issue 22 items 7 and 8): `--plan` reads every shard
header and index it needs, checks every entry (dtype known to safetensors, offsets that hold the shape and
cover the file the Hub reports), and a wrong one is one line naming the file, exit 2, before any download.
"""

import json
import shutil
import struct
from pathlib import Path

import pytest

from release.errors import ReleaseError
from release.parents.metadata import read_folder
from tests.test_plan import _cached_weights, _config, _plan, _publish

GATE = "model.language_model.layers.0.mlp.gate_proj.weight"


def _shard_of(folder: Path, key: str = GATE) -> Path:
    return folder / json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"][key]


def _rewrite_header(shard: Path, edit) -> None:
    raw = shard.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = edit(json.loads(raw[8:8 + n]))
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    shard.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def _entry(field, value):
    def edit(header):
        header[GATE][field] = value
        return header
    return edit


def _truncate(shard: Path) -> None:
    shard.write_bytes(shard.read_bytes()[:-64])


def _list_index(folder: Path) -> None:
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = sorted(index["weight_map"].items())
    index_path.write_text(json.dumps(index))


DAMAGE = {  # name: (damage the folder, words the one line must hold)
    "dtype-unknown": (lambda f: _rewrite_header(_shard_of(f), _entry("dtype", "Q4_K")), [GATE, "Q4_K"]),
    "offsets-past-the-end": (lambda f: _truncate(_shard_of(f)), ["past the end"]),
    "offsets-overlap": (lambda f: _rewrite_header(_shard_of(f), _entry("data_offsets", [0, 0])), [GATE, "data_offsets"]),
    "shape-not-a-list": (lambda f: _rewrite_header(_shard_of(f), _entry("shape", "64x96")), [GATE, "shape"]),
    "header-a-list": (lambda f: _rewrite_header(_shard_of(f), lambda h: list(h)), ["header is a JSON list"]),
    "entry-a-list": (lambda f: _rewrite_header(_shard_of(f), lambda h: {**h, GATE: [1, 2]}), [GATE, "JSON list"]),
    "index-weight-map-a-list": (_list_index, ["model.safetensors.index.json", "weight_map"]),
}


@pytest.fixture(scope="module")
def father_repo(tiny_parents):
    return _publish(tiny_parents.father, "honest")


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_lying_parent_is_one_line_from_the_plan_before_any_download(case, tiny_parents, father_repo, tmp_path,
                                                                      capsys):
    damage, words = DAMAGE[case]
    mother = tmp_path / "mother"
    shutil.copytree(tiny_parents.mother, mother)
    damage(mother)
    shard = _shard_of(tiny_parents.mother).name
    mother_repo = _publish(mother, "lying")
    code, out, err = _plan(_config(tmp_path, father_repo, mother_repo), capsys)
    line = err.strip()
    assert code == 2 and "\n" not in line and line.startswith("error: ") and "Traceback" not in err, err
    assert "parents: valid" not in out
    assert mother_repo in line and all(w in line for w in words), line
    if case != "index-weight-map-a-list":
        assert shard in line, line  # the file that lies is named
    assert not _cached_weights(mother_repo)

    # The same folder read locally (a run's pulled parents, a breeder's layout) is the same one line.
    with pytest.raises(ReleaseError) as e:
        read_folder("mother", mother)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
