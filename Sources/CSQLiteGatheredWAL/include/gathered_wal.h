#ifndef SWITCHBOARD_GATHERED_WAL_H
#define SWITCHBOARD_GATHERED_WAL_H

#include "sqlite_nio_sqlite3.h"

/// The name of a SQLite VFS that gathers the writes of a commit to the write-ahead log into
/// writes of up to 124 KB, made when SQLite syncs the log (or reads it, or writes elsewhere in it).
///
/// SQLite writes each frame of the log as two writes, a 24-byte header and a page, so a commit
/// of a few hundred pages makes a few hundred system calls; gathered, a few. Every other file,
/// and every other method, is the default VFS's own.
///
/// Only for connections with `PRAGMA synchronous = FULL` or `EXTRA`: with `NORMAL` SQLite does
/// not sync the log at a commit, so the commit's frames would stay in the buffer after other
/// connections were told they exist.
extern const char *const switchboard_gathered_wal_vfs_name;

/// Registers the VFS (not as the default); safe to call more than once and from any thread.
/// Returns SQLITE_OK, or SQLite's error when the default VFS is missing.
int switchboard_gathered_wal_register(void);

/// What a log file opened through the VFS did: `writes` calls SQLite made to write it, `flushes`
/// writes that reached the file. False when `file` is not a log file of the VFS.
/// (Get the file with `SQLITE_FCNTL_JOURNAL_POINTER`.)
int switchboard_gathered_wal_counts(sqlite3_file *file, sqlite3_int64 *writes, sqlite3_int64 *flushes);

#endif
