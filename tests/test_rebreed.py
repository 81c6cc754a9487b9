"""The same genome bred again gives a byte-identical child folder and card, so pushing it makes no new
Hub commit: nothing that varies between runs (wall time) is shipped. release.json keeps the time."""

import json
from pathlib import Path

from release.config import ReleaseConfig
from release.breeders.hybrid import default_layer_map
from release.pipeline import stage_card, stage_emit
from release.run.records import Bred, Pulled
from release.run.stages import folder_digest


def _bred(seconds: float, n_layers: int, n_mother: int) -> Bred:
    return Bred.from_json({"genome": [0.1, 0.2, 0.0, 0.3, 0.0, 0.15][:n_layers], "fitness": 0.61, "scores": {"synthetic": 0.61},
            "generations": 2, "evaluations": 4, "seconds": seconds, "stop_reason": "max_generations",
            "layer_map": default_layer_map(n_layers, n_mother), "device": "cpu", "dtype": "float32"})


def test_the_same_genome_bred_again_ships_the_same_bytes(tiny_parents, tmp_path):
    father_cfg = json.loads((tiny_parents.father / "config.json").read_text())
    mother_cfg = json.loads((tiny_parents.mother / "config.json").read_text())
    n_layers = father_cfg["text_config"]["num_hidden_layers"]
    n_mother = mother_cfg["text_config"]["num_hidden_layers"]
    pulled = Pulled.from_json({role: {"repo": f"darwin-local/tiny-{role}", "revision": c * 40, "path": str(path),
                                      "content": c * 16}
                               for role, c, path in (("father", "a", tiny_parents.father),
                                                     ("mother", "b", tiny_parents.mother))})
    digests = []
    for run, seconds in enumerate((12.5, 987.25)):  # one run of the search slower than the other
        config = ReleaseConfig.model_validate({
            "name": "rebred", "runs_dir": str(tmp_path / f"runs{run}"),
            "father": {"repo": pulled.father.repo}, "mother": {"repo": pulled.mother.repo},
            "child": {"repo": "darwin-local/rebred", "max_shard_size": "300KB"},
            "fitness": {"tasks": [{"name": "synthetic", "weight": 1.0}]},
        })
        log = config.run_dir / "breed" / "candidates.jsonl"
        log.parent.mkdir(parents=True)
        log.write_text("".join(json.dumps({"generation": g, "candidate": k, "genome": [], "scores": {},
                                           "fitness": 0.5 + 0.05 * g + 0.01 * k, "seconds": seconds / 4 + k})
                               + "\n" for g in range(2) for k in range(2)))
        child, _ = stage_emit(config, pulled, _bred(seconds, n_layers, n_mother), progress=False)
        stage_card(config, child, None)
        assert str(seconds) not in (Path(child.path) / "darwin_genome.json").read_text()
        digests.append(folder_digest(Path(child.path)))
    assert digests[0] == digests[1]
