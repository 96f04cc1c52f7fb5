// The agent kit: one process that logs in as several bot users and runs plugins on the client library.
