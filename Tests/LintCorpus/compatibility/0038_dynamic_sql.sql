DO $$ BEGIN EXECUTE 'ANALYZE accounts'; END $$;
