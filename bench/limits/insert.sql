-- pgbench: one durable single-row INSERT per transaction (what one commit per create gives).
INSERT INTO bench_rows (body) VALUES ('{"prompt": "bench"}');
