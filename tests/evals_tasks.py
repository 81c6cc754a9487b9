"""lm-eval task YAMLs over JSONL records written by the tests: one per output type lm-eval has."""

import json
import random
from pathlib import Path

MC_YAML = """\
task: local_mc
dataset_path: {dataset_path}
dataset_name: {dataset_name}
dataset_kwargs:
  data_files:
    test: {records}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
metadata:
  version: 1.0
"""

GEN_YAML = """\
task: local_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {records}
test_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 16
  do_sample: false
filter_list:
  - name: first-number
    filter:
      - function: regex
        regex_pattern: "(\\\\d+)"
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

TEXT_YAML = """\
task: local_text
dataset_path: json
dataset_kwargs:
  data_files:
    test: {records}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
"""


def arithmetic_records(n: int, seed: int) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    mc, gen, text = [], [], []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        options = [str(a + b), str(a + b + 1), str(a * b + 20), str(abs(a - b) + 30)]
        rng.shuffle(options)
        mc.append({"question": f"What is {a} plus {b}?", "choices": options, "label": options.index(str(a + b))})
        gen.append({"question": f"What is {a} plus {b}?", "answer": str(a + b)})
        text.append({"text": f"The number {a} and the number {b} make {a + b} together. " * rng.randint(1, 3)})
    return {"mc": mc, "gen": gen, "text": text}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_local_tasks(folder: Path, n: int = 24, seed: int = 0, mc_dataset: str = "json",
                      mc_config: str = "null") -> Path:
    """local_mc (multiple_choice), local_gen (generate_until, regex filter), local_text (rolling) in `folder`."""
    records = arithmetic_records(n, seed)
    for name, rows in records.items():
        write_jsonl(folder / f"{name}.jsonl", rows)
    (folder / "local_mc.yaml").write_text(MC_YAML.format(records=folder / "mc.jsonl", dataset_path=mc_dataset,
                                                         dataset_name=mc_config))
    (folder / "local_gen.yaml").write_text(GEN_YAML.format(records=folder / "gen.jsonl"))
    (folder / "local_text.yaml").write_text(TEXT_YAML.format(records=folder / "text.jsonl"))
    return folder
