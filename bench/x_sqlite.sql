-- bench/README.md, "Other programs": sqlite3 :memory: < bench/x_sqlite.sql
PRAGMA cache_size=-20000;
CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<60000)
INSERT INTO t SELECT i, abs(random()%1000), hex(randomblob(16+abs(random()%48))), random()/1e9 FROM n;
CREATE INDEX ta ON t(a);
CREATE INDEX tb ON t(b);
UPDATE t SET b = b || 'x' WHERE a % 3 = 0;
DELETE FROM t WHERE a % 7 = 0;
SELECT count(*), sum(a), max(length(b)) FROM t;
VACUUM;
SELECT count(*) FROM t WHERE a BETWEEN 100 AND 200;
