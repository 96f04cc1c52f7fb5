// The PostgreSQL storage backend of the server.
