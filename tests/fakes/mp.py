"""A Materials Project API on 127.0.0.1 that answers like the real one, for mp-api's MPRester.

Serves ``/heartbeat`` (database and emmet versions) and ``/materials/summary/`` with the
query parameters mp-api sends (``material_ids``, ``nsites_min/max``, ``energy_above_hull_min/max``,
``elements``, ``exclude_elements``, ``deprecated``, ``_fields``, ``_limit``, ``_skip``), checks the
``X-API-KEY`` header, and can fail the next N summary requests with 503 or 429 to test retries.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API_KEY = "a" * 32
DB_VERSION = "2025.09.25"


class FakeMP:
    def __init__(self, materials: list[dict]):
        self.materials = {m["material_id"]: m for m in materials}
        self.requests: list[dict] = []
        self.fail_next = 0
        self.fail_status = 503
        self.lock = threading.Lock()

    def select(self, q: dict) -> list[dict]:
        docs = list(self.materials.values())
        if "material_ids" in q:
            wanted = set(q["material_ids"].split(","))
            docs = [d for d in docs if d["material_id"] in wanted]
        for key, op in (("nsites_min", min), ("nsites_max", max)):
            if key in q:
                limit = int(q[key])
                docs = [d for d in docs if (d["nsites"] >= limit if op is min else d["nsites"] <= limit)]
        if "energy_above_hull_max" in q:
            docs = [d for d in docs if d["energy_above_hull"] <= float(q["energy_above_hull_max"])]
        if "energy_above_hull_min" in q:
            docs = [d for d in docs if d["energy_above_hull"] >= float(q["energy_above_hull_min"])]
        if "deprecated" in q:
            flag = q["deprecated"].lower() == "true"
            docs = [d for d in docs if d["deprecated"] == flag]
        if "elements" in q:
            need = set(q["elements"].split(","))
            docs = [d for d in docs if need <= set(d["elements"])]
        if "exclude_elements" in q:
            banned = set(q["exclude_elements"].split(","))
            docs = [d for d in docs if not banned & set(d["elements"])]
        return sorted(docs, key=lambda d: int(d["material_id"].split("-")[1]))

    def start(self):
        mp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                url = urlparse(self.path)
                q = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if url.path.rstrip("/") == "/heartbeat":
                    return self._send(200, {"db_version": DB_VERSION, "version": "0.87.1",
                                            "access_controlled_batch_ids": []})
                if self.headers.get("X-API-KEY") != API_KEY:
                    return self._send(401, {"detail": "Invalid or missing API key"})
                if url.path.rstrip("/") != "/materials/summary":
                    return self._send(404, {"detail": "Not Found"})
                with mp.lock:
                    mp.requests.append(q)
                    if mp.fail_next > 0:
                        mp.fail_next -= 1
                        return self._send(mp.fail_status, {"detail": "Service unavailable"})
                docs = mp.select(q)
                skip, limit = int(q.get("_skip", 0)), int(q.get("_limit", 1000))
                page = docs[skip : skip + limit]
                fields = q.get("_fields")
                if fields:
                    keep = fields.split(",")
                    page = [{k: d[k] for k in keep if k in d} for d in page]
                return self._send(200, {"data": page, "meta": {"total_doc": len(docs), "max_limit": 1000}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def mp_document(material_id: str, structure, energy_above_hull: float = 0.0, deprecated: bool = False) -> dict:
    """A summary document with the fields the pipeline asks for."""
    return {
        "material_id": material_id,
        "structure": structure.as_dict(),
        "nsites": len(structure),
        "formula_pretty": structure.composition.reduced_formula,
        "elements": sorted({el.symbol for el in structure.composition.elements}),
        "energy_above_hull": energy_above_hull,
        "deprecated": deprecated,
        "builder_meta": {"database_version": DB_VERSION},
    }
