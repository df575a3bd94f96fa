"""Where raw rides come from, read in chunks of pyarrow tables.

`csv_file` (a raw CSV file in exact-size chunks, malformed lines counted) and `ride_input` (the same
files read for pred and evaluate) -> `bigquery` (query pages, written through to the raw cache) with
`bigquery_client` (the official client, retries, deadlines) and `download` (resumable downloads);
`demo` (synthetic rides, the embedded default); `identity` (what was read: content fingerprints, file
identities).
"""
