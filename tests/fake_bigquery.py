"""A small fake of the BigQuery REST API, for the real google-cloud-bigquery client to talk to on 127.0.0.1.

It answers jobs.insert, jobs.get, jobs.getQueryResults and tables.get for the one query shape taxifare
sends: the seven raw columns of one table, `pickup_datetime >= @min_date AND pickup_datetime <
@max_date`, ordered by the columns the query names (NULLs first, as BigQuery). It runs that query with
pandas, records every request, and can be told to answer an error, to drop the connection instead of
serving a page, or to hold a page until released; restart() loses its jobs, as BigQuery drops a
result after about a day. Like BigQuery, getQueryResults takes `startIndex` (the first row of a page)
or `pageToken` (the next page), never both, and a job it does not hold is 404. A table's
lastModifiedTime is when the test last set it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

COLUMN_TYPES = {
    "fare_amount": "FLOAT",
    "pickup_datetime": "TIMESTAMP",
    "pickup_longitude": "FLOAT",
    "pickup_latitude": "FLOAT",
    "dropoff_longitude": "FLOAT",
    "dropoff_latitude": "FLOAT",
    "passenger_count": "INTEGER",
}
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 503: "UNAVAILABLE"}
_BYTES_PER_ROW = 56  # what BigQuery bills for the seven columns of one row


@dataclass
class SeenRequest:
    method: str
    path: str
    args: dict[str, str]
    body: dict | None


def typed_rides(frame: pd.DataFrame) -> pd.DataFrame:
    """The raw columns with BigQuery's types: floats, UTC timestamps, nullable integers."""
    return pd.DataFrame(
        {
            name: (
                pd.to_datetime(frame[name], utc=True, format="%Y-%m-%d %H:%M:%S UTC")
                if kind == "TIMESTAMP"
                else frame[name].astype("Int64" if kind == "INTEGER" else "float64")
            )
            for name, kind in COLUMN_TYPES.items()
        }
    )


def _json_value(value, kind: str) -> str | None:
    """A cell as the REST API sends it: a string, TIMESTAMPs as integer microseconds, or null."""
    if pd.isna(value):
        return None
    if kind == "TIMESTAMP":
        return str(value.value // 1000)
    return repr(float(value)) if kind == "FLOAT" else str(int(value))


class Tables(dict):
    """Tables by id ("project.dataset.table"), each with the time it was last set, in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self.modified_ms: dict[str, int] = {}

    def __setitem__(self, table: str, rides: pd.DataFrame) -> None:
        super().__setitem__(table, rides)
        self.modified_ms[table] = int(time.time() * 1000)


class FakeBigQuery:
    """`tables` maps "project.dataset.table" to a frame from `typed_rides`; set `error` to a
    (status, reason, message) to answer every jobs.insert with it, `drop_after_pages` to a count to close
    the connection instead of serving any page past it, `hold_at_row` to a row to stop the page that
    starts there (setting `held`) until `release` is set. `page_starts` lists the first row of every
    page served."""

    def __init__(self) -> None:
        self.tables = Tables()
        self.requests: list[SeenRequest] = []
        self.error: tuple[int, str, str] | None = None
        self.drop_after_pages: int | None = None
        self.pages_served = 0
        self.page_starts: list[int] = []
        self.hold_at_row: int | None = None
        self.held = threading.Event()
        self.release = threading.Event()
        self._jobs: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._listen(0)

    def _listen(self, port: int) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "FakeBigQuery":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def restart(self) -> None:
        """Stop, and listen again on the same port with the same tables and no job."""
        self.stop()
        self._jobs.clear()
        self._listen(self._server.server_address[1])
        self.start()

    def seen(self, kind: str) -> list[SeenRequest]:
        """The requests of one kind: "insert", "get", "results" or "table"."""
        return [request for request in self.requests if _route(request.method, request.path)[0] == kind]

    def insert_job(self, project: str, body: dict) -> tuple[int, dict]:
        if self.error:
            return _error_body(*self.error)
        query = body["configuration"]["query"]
        table = re.search(r"FROM `([^`]+)`", query["query"]).group(1)
        if table not in self.tables:
            missing = table.replace(".", ":", 1)
            return _error_body(404, "notFound", f"Not found: Table {missing} was not found in location US")
        window = {item["name"]: pd.Timestamp(item["parameterValue"]["value"]) for item in query["queryParameters"]}
        pickup = self.tables[table]["pickup_datetime"]
        picked = self.tables[table][(pickup >= window["min_date"]) & (pickup < window["max_date"])]
        order = re.search(r"ORDER BY (.+)", query["query"]).group(1).split(", ")
        picked = picked.sort_values(order, kind="stable", na_position="first")
        reference = {"projectId": project, "jobId": body["jobReference"]["jobId"], "location": "US"}
        job = {
            "kind": "bigquery#job",
            "id": f"{project}:US.{reference['jobId']}",
            "jobReference": reference,
            "configuration": body["configuration"],
            "statistics": {
                "creationTime": str(int(time.time() * 1000)),
                "query": {"totalBytesProcessed": str(len(pickup) * _BYTES_PER_ROW)},
            },
            "status": {"state": "RUNNING"},
        }
        rows = [
            {"f": [{"v": _json_value(value, kind)} for value, kind in zip(row, COLUMN_TYPES.values())]}
            for row in picked[list(COLUMN_TYPES)].itertuples(index=False)
        ]
        with self._lock:
            self._jobs[reference["jobId"]] = {"job": job, "rows": rows}
        return 200, job

    def get_job(self, job_id: str) -> tuple[int, dict]:
        if job_id not in self._jobs:
            return _error_body(404, "notFound", f"Not found: Job {job_id}")
        job = dict(self._jobs[job_id]["job"], status={"state": "DONE"})
        return 200, job

    def get_table(self, project: str, dataset: str, table: str) -> tuple[int, dict]:
        name = f"{project}.{dataset}.{table}"
        if name not in self.tables:
            return _error_body(404, "notFound", f"Not found: Table {project}:{dataset}.{table}")
        reference = {"projectId": project, "datasetId": dataset, "tableId": table}
        return 200, {
            "kind": "bigquery#table",
            "id": f"{project}:{dataset}.{table}",
            "tableReference": reference,
            "schema": {"fields": [{"name": name, "type": kind} for name, kind in COLUMN_TYPES.items()]},
            "numRows": str(len(self.tables[name])),
            "lastModifiedTime": str(self.tables.modified_ms[name]),
        }

    def query_results(self, job_id: str, args: dict[str, str]) -> tuple[int, dict] | None:
        """The page of rows asked for, or None to drop the connection."""
        if job_id not in self._jobs:
            return _error_body(404, "notFound", f"Not found: Job {job_id}")
        if "startIndex" in args and "pageToken" in args:
            return _error_body(400, "invalid", "startIndex and pageToken cannot both be set")
        stored = self._jobs[job_id]
        start = int(args.get("pageToken", args.get("startIndex", 0)))
        size = int(args.get("maxResults", len(stored["rows"])))
        answer = {
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": stored["job"]["jobReference"],
            "schema": {"fields": [{"name": name, "type": kind} for name, kind in COLUMN_TYPES.items()]},
            "totalRows": str(len(stored["rows"])),
            "totalBytesProcessed": stored["job"]["statistics"]["query"]["totalBytesProcessed"],
            "jobComplete": True,
            "cacheHit": False,
        }
        if size == 0:
            return 200, answer
        with self._lock:
            if self.drop_after_pages is not None and self.pages_served >= self.drop_after_pages:
                return None
            self.pages_served += 1
            self.page_starts.append(start)
        if start == self.hold_at_row:
            self.held.set()
            self.release.wait(timeout=60)
        answer["rows"] = stored["rows"][start : start + size]
        if start + size < len(stored["rows"]):
            answer["pageToken"] = str(start + size)
        return 200, answer


def _error_body(status: int, reason: str, message: str) -> tuple[int, dict]:
    return status, {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }


_ROUTES = (
    ("POST", re.compile(r"/bigquery/v2/projects/([^/]+)/jobs"), "insert"),
    ("GET", re.compile(r"/bigquery/v2/projects/([^/]+)/jobs/([^/]+)"), "get"),
    ("GET", re.compile(r"/bigquery/v2/projects/([^/]+)/queries/([^/]+)"), "results"),
    ("GET", re.compile(r"/bigquery/v2/projects/([^/]+)/datasets/([^/]+)/tables/([^/]+)"), "table"),
)


def _route(method: str, path: str) -> tuple[str | None, tuple[str, ...]]:
    for route_method, pattern, kind in _ROUTES:
        found = pattern.fullmatch(path)
        if method == route_method and found:
            return kind, found.groups()
    return None, ()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def log_message(self, format, *args) -> None:  # keep the test output quiet
        pass

    def _answer(self, method: str) -> None:
        fake: FakeBigQuery = self.server.fake
        url = urlsplit(self.path)
        args = dict(parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        with fake._lock:
            fake.requests.append(SeenRequest(method, url.path, args, body))
        kind, parts = _route(method, url.path)
        if kind == "insert":
            answer = fake.insert_job(parts[0], body)
        elif kind == "get":
            answer = fake.get_job(parts[1])
        elif kind == "results":
            answer = fake.query_results(parts[1], args)
        elif kind == "table":
            answer = fake.get_table(*parts)
        else:
            answer = _error_body(404, "notFound", f"no such method: {method} {url.path}")
        if answer is None:
            self.close_connection = True
            return
        status, payload = answer
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
