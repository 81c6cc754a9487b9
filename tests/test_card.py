"""The model card: rendered from the run's own files, every number traceable, nothing local or secret."""

import copy
import json
import math
import re
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from PIL import Image

from release.card.model_card import BAR_WIDTH, BASE_TAGS, render_model_card
from release.config import ReleaseConfig
from release.errors import ReleaseError

FIXTURES = Path(__file__).parent / "fixtures" / "card"
FAKE_TOKEN = "hf_FakeTokenForTestsOnly0123456789abcd"
HEADINGS = ["## What this model is", "## Benchmarks", "## How it was bred", "## Genome", "## Search progress",
            "## Genealogy", "## Usage", "## Limitations", "## Citation"]


def _config(**overrides) -> ReleaseConfig:
    raw = {
        "name": "tiny",
        "father": {"repo": "darwin-local/tiny-gemma4-father"},
        "mother": {"repo": "darwin-local/tiny-qwen3_5-mother"},
        "child": {"repo": "darwin-local/tiny-darwin-child"},
        "fitness": {"tasks": [{"name": "click", "weight": 0.6}, {"name": "musr", "weight": 0.4}]},
        "card": {"license": "apache-2.0", "languages": ["en", "ko"], "description": "A tiny test child.",
                 "genealogy": {"grandfather": "google/gemma-4-E4B-it"}, "tags": ["tiny"]},
    }
    raw.update(overrides)
    return ReleaseConfig.model_validate(raw)


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def _render(out: Path, config=None, genome=None, results="fixture", log=FIXTURES / "search_log.jsonl"):
    results = _fixture("results.json") if results == "fixture" else results
    card = render_model_card(config or _config(), genome or _fixture("genome.json"), results, log, out)
    return card, (out / "README.md").read_text(encoding="utf-8")


def _table_row(text: str, first_cell: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} ")]
    assert len(rows) == 1, f"expected one row starting with {first_cell!r}, got {rows}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def _cell(score: dict) -> str:
    return f"{score['value']:.3f} ± {score['stderr']:.3f}"


def _section(text: str, heading: str) -> str:
    return text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("card")
    card, text = _render(out)
    return out, card, text


def test_front_matter_round_trips_through_model_card_data(rendered):
    out, card, text = rendered
    loaded = ModelCard.load(out / "README.md")
    assert loaded.data.to_dict() == card.data.to_dict()
    assert str(loaded) == text

    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == "apache-2.0"
    assert front["base_model"] == ["darwin-local/tiny-gemma4-father", "darwin-local/tiny-qwen3_5-mother"]
    assert front["base_model_relation"] == "merge"
    assert front["language"] == ["en", "ko"]
    assert front["library_name"] == "transformers"
    assert front["pipeline_tag"] == "text-generation"
    assert front["tags"] == BASE_TAGS + ["tiny"]

    results = _fixture("results.json")
    (index,) = front["model-index"]
    assert index["name"] == "tiny-darwin-child"
    assert len(index["results"]) == len(results["tasks"]) == 2
    for entry, (task, info) in zip(index["results"], results["tasks"].items()):
        assert entry["dataset"]["type"] == info["dataset"]
        (metric,) = entry["metrics"]
        assert metric["type"] == info["metric"]
        assert metric["value"] == results["models"]["child"]["scores"][task]["value"]
        assert metric["verified"] is False


def test_benchmark_table_holds_exactly_the_fixture_numbers(rendered):
    _, _, text = rendered
    results = _fixture("results.json")
    for task, label in (("click", "CLIcK"), ("musr", "MuSR")):
        row = _table_row(text, label)
        assert row[1] == results["tasks"][task]["metric"]
        assert row[2] == str(results["tasks"][task]["n"])
        assert row[3:] == [_cell(results["models"][who]["scores"][task]) for who in ("child", "father", "mother")]
    row = _table_row(text, "Weighted score")
    assert row[3:] == [_cell(results["models"][who]["fitness"]) for who in ("child", "father", "mother")]
    assert row[3:] == ["0.479 ± 0.019", "0.462 ± 0.019", "0.445 ± 0.019"]  # the formatting itself


def test_a_changed_number_in_the_results_changes_the_card(tmp_path):
    results = _fixture("results.json")
    results["models"]["child"]["scores"]["click"] = {"value": 0.6371, "stderr": 0.0241}
    results["models"]["mother"]["scores"]["musr"]["value"] = 0.3912
    results["tasks"]["click"]["weight"], results["tasks"]["musr"]["weight"] = 1.0, 3.0  # shown normalised
    card, text = _render(tmp_path, results=results)
    assert "Weighted score = 0.25 × CLIcK + 0.75 × MuSR." in text
    assert _table_row(text, "CLIcK")[3] == "0.637 ± 0.024"
    assert _table_row(text, "MuSR")[5] == "0.391 ± 0.028"
    assert "0.512 ± 0.025" not in text
    click = card.data.to_dict()["model-index"][0]["results"][0]
    assert click["metrics"][0]["value"] == 0.6371


def _with_fitness(child, father, mother) -> dict:
    results = _fixture("results.json")
    for who, (value, se) in zip(("child", "father", "mother"), (child, father, mother)):
        results["models"][who]["fitness"] = {"value": value, "stderr": se}
    return results


def test_hybrid_vigor_is_claimed_when_the_child_clearly_beats_both_parents(tmp_path):
    results = _with_fitness(child=(0.56, 0.018), father=(0.46, 0.019), mother=(0.44, 0.019))
    _, text = _render(tmp_path, results=results)
    benchmarks = _section(text, "## Benchmarks")
    assert "**Hybrid vigor:**" in benchmarks
    assert "no hybrid vigor" not in benchmarks
    # margins: 0.100 > sqrt(0.018^2 + 0.019^2) = 0.026 and 0.120 > 0.026
    assert "by 0.100" in benchmarks and "by 0.120" in benchmarks
    assert f"{math.hypot(0.018, 0.019):.3f}" == "0.026" and "(0.026 and 0.026)" in benchmarks
    assert "sqrt(se_child^2 + se_p^2)" in benchmarks


def test_hybrid_vigor_is_not_claimed_within_the_combined_stderr(tmp_path):
    # Above both parents, and above max(se) = 0.020, but not above sqrt(0.02^2 + 0.02^2) = 0.028.
    results = _with_fitness(child=(0.525, 0.02), father=(0.50, 0.02), mother=(0.499, 0.02))
    assert 0.525 - 0.50 > 0.02 and 0.525 - 0.50 < math.hypot(0.02, 0.02)
    _, text = _render(tmp_path, results=results)
    benchmarks = _section(text, "## Benchmarks")
    assert "**Hybrid vigor:**" not in benchmarks
    assert "no hybrid vigor is claimed at this sample size" in benchmarks
    flat = " ".join(benchmarks.split())
    assert "The child scored 0.525 ± 0.020; the father 0.500 ± 0.020; the mother 0.499 ± 0.020" in flat
    assert "does not beat the father or the mother by more than the combined standard error" in flat


def test_images_are_valid_pngs_referenced_by_relative_path(rendered):
    out, _, text = rendered
    for name in ("genome.png", "fitness.png"):
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5_000
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size == (800, 360)
            # a real chart, not a blank canvas: many distinct colours
            assert len(image.convert("RGB").getcolors(maxcolors=100_000)) > 20
        assert f"]({name})" in text


def test_rendering_is_deterministic(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _render(first)
    _render(second)
    for name in ("README.md", "genome.png", "fitness.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert b"Software" not in (first / "genome.png").read_bytes()  # no matplotlib version stamp


def test_no_token_or_local_path_reaches_the_card(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", FAKE_TOKEN)
    local = tmp_path / "private"
    (local / "data").mkdir(parents=True)  # the config checks that they exist
    (local / "calib.txt").write_text("Some calibration text.")
    config = _config(
        fitness={"tasks": [{"name": "click", "weight": 0.6}, {"name": "musr", "weight": 0.4}],
                 "data_dir": str(local / "data"), "calibration_text": str(local / "calib.txt")},
        hub={"endpoint": "local", "local_root": str(local / "hub")},
        runs_dir=str(local / "runs"),
    )
    out = tmp_path / "out"
    _, text = _render(out, config=config)
    for name in ("README.md", "genome.png", "fitness.png"):
        data = (out / name).read_bytes()
        assert FAKE_TOKEN.encode() not in data and str(tmp_path).encode() not in data
    assert "hf_" not in text and "/tmp/" not in text
    assert str(Path.home()) + "/" not in text
    assert str(Path.cwd()) not in text


@pytest.mark.parametrize("card_field", [
    {"description": f"Use token {FAKE_TOKEN} to download."},
    {"genealogy": {"grandfather": "/tmp/checkpoints/gemma"}},
    {"citation": f"@misc{{x, note={{{Path.home()}/secret}}}}"},
])
def test_a_token_or_local_path_in_a_card_field_is_refused(tmp_path, card_field):
    # The config refuses a local path at load (issue 28); the card still checks what it renders, for a
    # config built past validation.
    config = _config().model_copy(update={"card": _config().card.model_copy(update={"description": "", **card_field})})
    with pytest.raises(ReleaseError) as error:
        _render(tmp_path, config=config)
    message = str(error.value)
    assert "\n" not in message and FAKE_TOKEN not in message and "/tmp/" not in message
    assert "card fields" in message
    assert list(tmp_path.iterdir()) == []  # nothing written: no card, no charts


def test_sections_are_readable_plain_markdown(rendered):
    _, _, text = rendered
    body = text.split("---\n", 2)[2]
    positions = [body.index(h + "\n") for h in HEADINGS]
    assert positions == sorted(positions)
    assert body.startswith("\n# tiny-darwin-child\n")
    assert not re.search(r"</?(table|tr|td|div|br|img)\b", body, re.I)  # no raw HTML
    assert "None" not in body and "built-in" not in body and "Undefined" not in body

    in_code = False
    for line in body.splitlines():
        in_code = in_code != line.startswith("```")
        if not in_code and not line.startswith("|"):
            assert len(line) <= 120, line
    # every table's rows have as many cells as its header, and line up in plain text
    for table in re.findall(r"(?:^\|.*\|\n)+", body, re.M):
        rows = table.splitlines()
        assert len({row.count("|") for row in rows}) == 1, table


def test_genome_table_has_one_row_per_layer_with_proportional_bars(rendered):
    _, _, text = rendered
    genome = _fixture("genome.json")
    rows = [line for line in _section(text, "## Genome").splitlines() if re.match(r"\|\s+\d+ \|", line)]
    assert len(rows) == len(genome["ratios"]) == 6
    for i, line in enumerate(rows):
        layer, mother, ratio, bar, note = [c.strip() for c in line.strip("|").split("|")]
        assert (int(layer), int(mother), ratio) == (i, genome["layer_map"][i], f"{genome['ratios'][i]:.3f}")
        full = bar.count("█")
        assert full == int(genome["ratios"][i] / genome["r_max"] * BAR_WIDTH + 1e-9)
        assert note == ("frozen" if i in genome["frozen"] else "father only" if genome["ratios"][i] == 0 else "")
    # 0.3 / 0.5 of 20 characters = 12 full blocks; 0.12 / 0.5 * 20 = 4.8 = 4 full + 6/8
    assert "| ████████████         |" in text and "| ████▊                |" in text


def test_search_progress_and_settings_come_from_the_log_and_genome(rendered):
    _, _, text = rendered
    lines = [json.loads(line) for line in (FIXTURES / "search_log.jsonl").read_text().splitlines()]
    for generation in range(5):
        values = [x["fitness"] for x in lines if x["generation"] == generation]
        row = _table_row(text, f"{generation:10d}")
        assert row == [str(generation), str(len(values)), f"{max(values):.3f}", f"{sum(values) / len(values):.3f}"]
    genome = _fixture("genome.json")
    assert _table_row(text, "evaluations   ")[1] == str(genome["search"]["evaluations"]) == str(len(lines))
    assert "| time " not in text and "61.2" not in text  # wall time would make every re-breed a new commit
    assert _table_row(text, "fitness       ")[1] == "benchmark: 0.6 × CLIcK (100 items) + 0.4 × MuSR (60 items)"
    assert genome["father"]["revision"] in _section(text, "## How it was bred")
    assert genome["mixing_formula"] in text
    assert "Frozen at r_i = 0 (not searched): layers 3." in text
    genealogy = _section(text, "## Genealogy")
    assert "- grandfather: google/gemma-4-E4B-it" in genealogy
    assert "@software{darwin_release," in _section(text, "## Citation")


def test_skipped_evaluation_and_missing_log_are_said_plainly(tmp_path):
    (tmp_path / "fitness.png").write_bytes(b"stale")
    card, text = _render(tmp_path, results=None, log=None,
                         config=_config(card={"citation": "@misc{mine, title={Mine}}"}))
    assert "model-index" not in card.data.to_dict()
    assert "model-index" not in yaml.safe_load(text.split("---\n")[1])
    assert "The final evaluation was skipped for this release" in _section(text, "## Benchmarks")
    assert "No search log with finished candidates was given" in _section(text, "## Search progress")
    assert not (tmp_path / "fitness.png").exists()
    assert "@misc{mine, title={Mine}}" in text and "@software{darwin_release" not in text
    assert ModelCard.load(tmp_path / "README.md").data.to_dict() == card.data.to_dict()


def test_bad_inputs_are_one_line_release_errors(tmp_path):
    genome = _fixture("genome.json")
    short = copy.deepcopy(genome)
    short["layer_map"] = [0, 1]
    other_father = copy.deepcopy(genome)
    other_father["father"]["repo"] = "someone/else"
    results = _fixture("results.json")
    del results["models"]["mother"]["scores"]["musr"]
    bad_log = tmp_path / "log.jsonl"
    bad_log.write_text('{"generation": 0, "fitness": 0.5}\nnot json\n')
    cases = [
        ({"genome": short}, "layer_map has 2 entries for 6 ratios"),
        ({"genome": other_father}, "bred from father someone/else"),
        ({"results": results}, "models.mother has no score for tasks ['musr']"),
        ({"log": bad_log}, "line 2"),
        ({"log": tmp_path / "absent.jsonl"}, "not found"),
    ]
    for kwargs, expected in cases:
        with pytest.raises(ReleaseError, match=re.escape(expected)) as error:
            _render(tmp_path / "out", **kwargs)
        assert "\n" not in str(error.value)
    assert str(error.value).startswith("search log absent.jsonl not found")
    with pytest.raises(ReleaseError) as error:
        _render(tmp_path / "out", genome=short)
    assert str(error.value) == ("darwin_genome.json: Value error, layer_map has 2 entries for 6 ratios; "
                                "re-run the stage that wrote it (darwin-release breed / eval)")


def test_usage_snippet_runs_with_transformers(rendered, tiny_parents):
    # The child's modeling code is someone else's; the father checkpoint checks the snippet's
    # transformers calls (Auto classes, chat template, generate, decode) against the installed version.
    _, _, text = rendered
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    assert 'repo = "darwin-local/tiny-darwin-child"' in code and "trust_remote_code=True" in code
    code = code.replace('"darwin-local/tiny-darwin-child"', repr(str(tiny_parents.father)))
    code = code.replace("max_new_tokens=128", "max_new_tokens=3")
    namespace: dict = {}
    exec(compile(code, "usage-snippet", "exec"), namespace)
    prompt = namespace["inputs"]["input_ids"].shape[-1]
    assert prompt < namespace["output"].shape[-1] <= prompt + 3  # generated, possibly stopping at eos


def test_usage_names_the_transformers_release_the_child_code_needs(rendered):
    from modeling.configuration_darwin import TRANSFORMERS_VERSION

    _, _, text = rendered
    usage = text.split("## Usage")[1].split("## Limitations")[0]
    (install,) = re.findall(r"```bash\n(.*?)```", usage, re.S)
    assert install.strip() == f"pip install transformers=={TRANSFORMERS_VERSION}"


def test_pipeline_tag_is_the_fathers_when_the_child_is_of_his_class_else_from_the_architecture(tmp_path):
    from release.card.model_card import child_pipeline_tag

    def folder(name: str, architectures: list[str]) -> Path:
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"architectures": architectures}))
        return tmp_path / name

    father = folder("father", ["Gemma4ForConditionalGeneration"])
    same = folder("same", ["Gemma4ForConditionalGeneration"])
    darwin = folder("darwin", ["DarwinForCausalLM"])
    assert child_pipeline_tag("any-to-any", father, same) == "any-to-any"  # a weight merge: the father's own
    assert child_pipeline_tag(None, father, same) == "image-text-to-text"  # his card says none: the class
    assert child_pipeline_tag("any-to-any", father, darwin) == "text-generation"  # the cross-architecture child
    card, text = _render(tmp_path / "card", genome=_fixture("genome.json"))
    assert yaml.safe_load(text.split("---\n")[1])["pipeline_tag"] == "text-generation"
    card = render_model_card(_config(), _fixture("genome.json"), None, None, tmp_path / "tagged",
                             pipeline_tag="image-text-to-text")
    assert card.data.pipeline_tag == "image-text-to-text"


def test_per_layer_tables_past_twelve_rows_fold_into_details(tmp_path, rendered):
    from release.card.model_card import FOLD_ROWS

    _, _, short = rendered
    assert "<details>" not in short  # 6 layers: the tables stay open
    genome = _fixture("genome.json")
    n = 42  # Genesis
    genome.update(ratios=[0.1 * (i % 5) for i in range(n)], layer_map=[round(i * 31 / 41) for i in range(n)],
                  frozen=[15, 16, 22, 23, 24, 25])
    for i in genome["frozen"]:
        genome["ratios"][i] = 0.0
    _, text = _render(tmp_path, genome=genome)
    section = _section(text, "## Genome")
    assert n > FOLD_ROWS and section.count("<details><summary>The genome, layer by layer (42 rows)</summary>") == 1
    inside = section.split("<summary>", 1)[1].split("</details>", 1)[0]
    assert sum(line.startswith("| ") and line.split("|")[1].strip().isdigit() for line in inside.splitlines()) == n
    assert "\n\n| Layer | Mother layer |" in inside  # a blank line after <summary>: the table renders as Markdown
    assert "</details>\n\n![Genome" in section
