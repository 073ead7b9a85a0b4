ALTER DATABASE tally_app SET work_mem = '8MB';
