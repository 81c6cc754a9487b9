"""mergekit in: mergekit and mergekit-evolve configs (each first read by mergekit's own parser) become
darwin-release configs that load, with what does not map listed one line each."""

import pytest
import yaml
from mergekit.config import MergeConfiguration
from mergekit.evo.config import EvolMergeConfiguration

from release.breeders.mergekit_in import import_mergekit
from release.config import load_config
from release.errors import ReleaseError
from tests.background import early_run
from tests.cli import run_cli

FATHER, MOTHER = "google/gemma-4-E4B-it", "TeichAI/Claude-Opus-Distill-E4B"
SHA = "0123456789abcdef0123456789abcdef01234567"

TIES = f"""
merge_method: ties
base_model: {FATHER}@{SHA}
models:
  - model: {FATHER}@{SHA}
  - model: {MOTHER}
    parameters:
      weight: 0.45
      density: 0.6
parameters:
  normalize: false
  int8_mask: true
dtype: bfloat16
tokenizer_source: union
"""

SLERP = f"""
slices:
  - sources:
      - model: {FATHER}
        layer_range: [0, 42]
      - model: {MOTHER}
        layer_range: [0, 42]
merge_method: slerp
base_model: {FATHER}
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: float16
"""

EVOLVE = f"""
genome:
  models:
    - {FATHER}
    - {MOTHER}
  merge_method: dare_ties
  base_model: {FATHER}
  layer_granularity: 8
  normalize: false
tasks:
  - name: leaderboard_musr
    weight: 0.4
  - name: click
    weight: 0.6
    metric: "acc,none"
  - name: gsm8k
    weight: 1.0
    metric: "exact_match,strict-match"
limit: 100
num_fewshot: 0
"""


def _imported(text: str, name: str = "imported"):
    return import_mergekit(yaml.safe_load(text), name)


def test_a_ties_config_maps_method_parents_pins_weight_density_and_dtype():
    MergeConfiguration.model_validate(yaml.safe_load(TIES))  # a real mergekit config
    config, notes = _imported(TIES)
    assert config["breed"]["method"] == "ties"
    assert config["father"] == {"repo": FATHER, "revision": SHA} and config["mother"] == {"repo": MOTHER}
    assert config["genome"] == {"r_max": 1.0, "init_mean": 0.45}  # normalize: false: the weight is her share
    assert config["breed"]["density_init"] == 0.6 and config["search"] == {"dtype": "bfloat16"}
    assert config["fitness"] == {"kind": "calibration"}
    assert "tokenizer_source: not mapped (darwin-release has no such setting)" in notes
    assert "parameters.int8_mask: not mapped" in notes
    assert any(n.startswith("child.repo: mergekit names no output repo") for n in notes)
    assert all("\n" not in n for n in notes)


def test_a_slerp_with_slices_and_per_filter_gradients_starts_at_their_mean():
    MergeConfiguration.model_validate(yaml.safe_load(SLERP))
    config, notes = _imported(SLERP)
    assert config["breed"] == {"method": "slerp"}
    # self_attn and mlp gradients both average 0.5 over the layers; the default is 0.5
    assert config["genome"]["init_mean"] == 0.5
    assert any(n.startswith("parameters.t: values by filter (self_attn, mlp, default)") for n in notes)
    assert any(n.startswith("parameters.t (self_attn): a gradient over the layers [0, 0.5, 0.3, 0.7, 1]") for n in notes)
    assert config["search"] == {"dtype": "float16"}


def test_linear_weights_are_normalised_as_mergekit_normalises_them():
    text = f"""
merge_method: linear
models:
  - model: {FATHER}
    parameters: {{weight: 0.6}}
  - model: {MOTHER}
    parameters: {{weight: 1.4}}
"""
    MergeConfiguration.model_validate(yaml.safe_load(text))
    config, _ = _imported(text)
    assert config["father"]["repo"] == FATHER and config["genome"]["init_mean"] == 0.7


def test_a_mergekit_evolve_config_maps_its_tasks_and_lists_the_rest():
    EvolMergeConfiguration.model_validate(yaml.safe_load(EVOLVE))  # a real mergekit-evolve config
    config, notes = _imported(EVOLVE, "evolved")
    assert config["name"] == "evolved" and config["breed"]["method"] == "dare_ties"
    assert config["fitness"] == {"kind": "benchmark", "tasks": [
        {"name": "musr", "weight": 0.4, "num_fewshot": 0}, {"name": "click", "weight": 0.6, "metric": "acc,none", "num_fewshot": 0},
        {"name": "gsm8k", "weight": 1.0, "metric": "exact_match,strict-match", "num_fewshot": 0}]}
    assert "limit: not mapped (darwin-release has no such setting)" in notes
    assert "genome.layer_granularity: not mapped" in notes and "genome.normalize: not mapped" in notes


def test_what_cannot_be_bred_is_a_one_line_error():
    with pytest.raises(ReleaseError, match="merge_method 'task_arithmetic' has no darwin-release breeder"):
        _imported(TIES.replace("merge_method: ties", "merge_method: task_arithmetic"))
    three = TIES.replace("parameters:\n  normalize", "  - model: someone/third\nparameters:\n  normalize")
    with pytest.raises(ReleaseError, match=r"3 models .* darwin-release breeds exactly two parents"):
        _imported(three)
    frankenmerge = SLERP.replace("layer_range: [0, 42]\n      - model", "layer_range: [0, 20]\n      - model", 1)
    with pytest.raises(ReleaseError, match="passthrough/frankenmerge"):
        _imported(frankenmerge)
    with pytest.raises(ReleaseError, match="the imported config does not load: father.repo"):
        _imported(TIES.replace(f"{FATHER}@", "not a repo@"))


@early_run
def imported_by_the_cli(tmp_path, env):
    """`import-mergekit` three times (to a file, to stdout, a missing file), in the background from the
    session's start (tests/background.py)."""
    source = tmp_path / "merge.yml"
    source.write_text(TIES)
    out = run_cli(tmp_path, "import-mergekit", str(source), "-o", str(tmp_path / "from-mergekit.yaml"), environ=env)
    printed = run_cli(tmp_path, "import-mergekit", str(source), environ=env)
    bad = run_cli(tmp_path, "import-mergekit", str(tmp_path / "missing.yml"), environ=env)
    return tmp_path, out, printed, bad


def test_the_cli_writes_a_config_that_loads_and_lists_what_did_not_map(imported_by_the_cli):
    tmp_path, out, printed, bad = imported_by_the_cli
    assert out.returncode == 0, out.stderr
    config = load_config(tmp_path / "from-mergekit.yaml")
    assert config.name == "from-mergekit" and config.breed.method == "ties" and config.father.revision == SHA
    assert "not mapped: tokenizer_source: not mapped" in out.stdout
    assert printed.returncode == 0 and "# Not mapped:" in printed.stdout
    assert yaml.safe_load(printed.stdout)["breed"]["method"] == "ties"
    assert bad.returncode == 2 and bad.stderr.startswith("error: import-mergekit:") and bad.stderr.count("\n") == 1
