"""What a ride is, for every path (preprocess on either engine, pred, evaluate).

`layout` (the raw columns, headers, `--columns`, `--delimiter`) -> `date_columns` (pickup times read a
column at a time, by core/dates.py's grammar) with `clock` (times of other zones and instants to the New
York wall clock) -> `clean` (parse and reject rides, rule by rule, with samples; `dedup`: the index of
rows already seen; `table`: the parsed rides as NumPy columns) -> `features` (the stateless, row-wise
preprocessor and its version).
"""
