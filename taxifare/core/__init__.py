"""The bottom layer, used by every other package and using none of them.

`config` (the one `Settings` object: flags, environment, `.env`), `dates` (the one date grammar, for
settings and cells alike, and its clock: New York wall-clock time), `errors` (the error types the CLI
maps to exit codes, stop signals), `files` (crash-safe writes, staged files, OS errors in one line),
`lock` (one writer per output), `progress` (progress bar and log lines on long work), `lines` (text
files as spans of lines, line numbers).
"""
