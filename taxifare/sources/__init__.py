"""Where raw rides come from, read in chunks of pyarrow tables of text.

`raw_csv` (the one reader of raw CSV files, for preprocess on either engine, pred and evaluate: local
paths, URLs, stdin, gzip, byte ranges; column check; blocks of whole lines; malformed lines set aside;
and the writer of text tables as CSV) -> `csv_file` (a raw CSV as a source of exact-size chunks,
malformed lines counted and placed); `parquet_file` (a Parquet file, its values turned by `raw_text`
into the text a CSV holds); `several_files` (a glob, or several --input, as one source); `bigquery`
(query pages, turned by `raw_text` and written through to the raw cache, which is then read as a CSV)
with `bigquery_client` (the official client, retries, deadlines) and `download` (resumable downloads);
`demo` (synthetic rides, the embedded default); `identity` (what was read: content fingerprints, file
identities).
"""
