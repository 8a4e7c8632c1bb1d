"""Hash banks (issue 12 item 3): operator-managed lists of known content that decide without the model.

    entries.py  names, actions (block with a category, allow), hash types, validation
    formats.py  hash files in and out (csv, jsonl, HMA signals, ThreatExchange signal files)
    store.py    banks in Redis (configs, entries, versions), bounded per bank
    index.py    the in-memory PDQ near-match index (multi-index hashing)
    matcher.py  the bank `Matcher`, checked before the verdict cache

Managed with `llavaguard banks ...` (worker/commands/banks.py). Nothing here imports the pipeline.
"""
