"""`stepup-dist dashboard`: a live web page of a server's pools, builds and workers, and
Prometheus metrics at `/metrics` (needs the `dashboard` extra: aiohttp, prometheus_client).

- `source.py`: the reads of the server, through the broker layer;
- `view.py`: what the page shows, as plain data (and the times the server keeps none of);
- `history.py`: each pool's use over the last hours, in memory;
- `metrics.py`: the Prometheus metrics;
- `server.py`: the web server and the sampler that reads the server every 2 s;
- `static/`: the page, its script and its style sheet (no CDN, no inline script).
"""
