"""The trained tiny zoo: parents of the real architectures that know something, so breeding can be measured.

Random tiny parents make every fitness noise. The zoo holds four tiny models trained here on CPU,
deterministically (seed 0, one torch thread), on synthetic skills generated from a seed:

- `models/base`: the project's tiny Gemma 4 father (`release.tiny`: hidden 64, 6 layers, its 640-token
  byte-level BPE tokenizer, the same ConditionalGeneration checkpoint layout) trained on a base mix
  (1-digit sums, counting, copying and reversing words of every vocabulary);
- `models/lang_a`, `models/lang_b`: specialists fine-tuned from the base on the made-up word language
  `de:` (A) or `tr:` (B), with 50% replay of the base mix (without replay every merge collapses);
- `models/mother_b`: the tiny Qwen3.5 mother (`release.tiny`'s config) trained from scratch on B, the
  cross-architecture partner of A.

The skills ship as standard lm-eval multiple-choice tasks in `tasks/` (`zoo_lang_a`, `zoo_lang_b`,
`zoo_base`; only items never trained on). `SHA256SUMS` lists every file. Modules: `skills` (items and
splits), `training` (the answer-only training loop), `build` (the four models), `tasks` (the lm-eval
task folder), `manifest` (hashes); `python -m release.zoo` retrains (`make zoo`), `--verify` checks the
files, `--check` retrains into a temporary folder and compares bytes.
"""
