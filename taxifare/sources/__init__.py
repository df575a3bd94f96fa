"""Where raw rides come from, read in chunks of pyarrow tables of text.

`raw_csv` (the one reader of raw CSV files, for preprocess on either engine, pred and evaluate: local
paths, URLs, stdin, byte ranges; column check; blocks of whole lines; malformed lines set aside) ->
`csv_file` (a raw CSV as a source of exact-size chunks, malformed lines counted and placed);
`bigquery` (query pages, written through to the raw cache, which is then read as a CSV) with
`bigquery_client` (the official client, retries, deadlines) and `download` (resumable downloads);
`demo` (synthetic rides, the embedded default); `identity` (what was read: content fingerprints, file
identities).
"""
