// PostgreSQL's parser as a C library (Debian: libpg-query-dev, which ships no pkg-config file).
#include <pg_query.h>
