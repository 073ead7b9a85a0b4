ALTER SYSTEM SET work_mem = '8MB';
