"""The run folder `runs/<name>/`: stage bookkeeping and the typed records the stages hand each other
(`stages`, `records`), the lock that keeps one run per folder (`lock`), and atomic writes (`files`).

May import: errors only (and the config for types). Every other wing may import it.
"""
