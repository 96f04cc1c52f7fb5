#include "gathered_wal.h"

#include <pthread.h>
#include <string.h>

// A shim over the default VFS (as SQLite's own test_vfstrace.c and multiplex are): files that
// are not write-ahead logs are opened by the default VFS in place and keep its methods; a log
// gets the methods below, which hold contiguous writes in a buffer and hand them to the default
// VFS as one write before anything else touches the file.

const char *const switchboard_gathered_wal_vfs_name = "switchboard-gathered-wal";

// The default VFS writes at most 0x1ffff bytes in one call (its `seekAndWriteFd` masks the length
// with it, so a megabyte would become 0 bytes and "disk full"): 31 pages of 4 KB, about 6 small
// messages' frames, in one write instead of 62.
enum { BUFFER_CAPACITY = 31 * 4096 };

typedef struct GatheredFile {
    sqlite3_file base;
    sqlite3_file *real;       // the default VFS's file, just after this struct
    unsigned char *buffer;    // allocated on the first write
    int length;               // bytes held in buffer
    sqlite3_int64 start;      // the file offset of buffer[0]
    sqlite3_int64 writes;
    sqlite3_int64 flushes;
} GatheredFile;

static sqlite3_vfs *defaultVFS;

static int flush(GatheredFile *file) {
    if (file->length == 0) return SQLITE_OK;
    int length = file->length;
    file->length = 0;
    file->flushes += 1;
    return file->real->pMethods->xWrite(file->real, file->buffer, length, file->start);
}

static int gatheredClose(sqlite3_file *base) {
    GatheredFile *file = (GatheredFile *)base;
    int flushed = flush(file);
    int closed = file->real->pMethods->xClose(file->real);
    sqlite_nio_sqlite3_free(file->buffer);
    file->buffer = NULL;
    return flushed != SQLITE_OK ? flushed : closed;
}

static int gatheredWrite(sqlite3_file *base, const void *data, int amount, sqlite3_int64 offset) {
    GatheredFile *file = (GatheredFile *)base;
    file->writes += 1;
    if (file->length > 0 && offset == file->start + file->length && amount <= BUFFER_CAPACITY - file->length) {
        memcpy(file->buffer + file->length, data, (size_t)amount);
        file->length += amount;
        return SQLITE_OK;
    }
    int rc = flush(file);
    if (rc != SQLITE_OK) return rc;
    if (file->buffer == NULL) file->buffer = sqlite_nio_sqlite3_malloc(BUFFER_CAPACITY);
    if (file->buffer == NULL || amount > BUFFER_CAPACITY) {
        file->flushes += 1;
        return file->real->pMethods->xWrite(file->real, data, amount, offset);
    }
    memcpy(file->buffer, data, (size_t)amount);
    file->start = offset;
    file->length = amount;
    return SQLITE_OK;
}

// Every other method flushes first, so that it sees (and syncs, reads, truncates) the file as
// SQLite wrote it.
#define FLUSHED(file) GatheredFile *file = (GatheredFile *)base; do { int rc = flush(file); if (rc != SQLITE_OK) return rc; } while (0)

static int gatheredRead(sqlite3_file *base, void *data, int amount, sqlite3_int64 offset) {
    FLUSHED(file);
    return file->real->pMethods->xRead(file->real, data, amount, offset);
}

static int gatheredTruncate(sqlite3_file *base, sqlite3_int64 size) {
    FLUSHED(file);
    return file->real->pMethods->xTruncate(file->real, size);
}

static int gatheredSync(sqlite3_file *base, int flags) {
    FLUSHED(file);
    return file->real->pMethods->xSync(file->real, flags);
}

static int gatheredFileSize(sqlite3_file *base, sqlite3_int64 *size) {
    FLUSHED(file);
    return file->real->pMethods->xFileSize(file->real, size);
}

static int gatheredLock(sqlite3_file *base, int level) {
    FLUSHED(file);
    return file->real->pMethods->xLock(file->real, level);
}

static int gatheredUnlock(sqlite3_file *base, int level) {
    FLUSHED(file);
    return file->real->pMethods->xUnlock(file->real, level);
}

static int gatheredCheckReservedLock(sqlite3_file *base, int *result) {
    FLUSHED(file);
    return file->real->pMethods->xCheckReservedLock(file->real, result);
}

static int gatheredFileControl(sqlite3_file *base, int op, void *argument) {
    FLUSHED(file);
    return file->real->pMethods->xFileControl(file->real, op, argument);
}

static int gatheredSectorSize(sqlite3_file *base) {
    GatheredFile *file = (GatheredFile *)base;
    return file->real->pMethods->xSectorSize(file->real);
}

static int gatheredDeviceCharacteristics(sqlite3_file *base) {
    GatheredFile *file = (GatheredFile *)base;
    return file->real->pMethods->xDeviceCharacteristics(file->real);
}

// Version 1: SQLite maps and shares memory through the database file only, never its log.
static const sqlite3_io_methods gatheredMethods = {
    .iVersion = 1,
    .xClose = gatheredClose,
    .xRead = gatheredRead,
    .xWrite = gatheredWrite,
    .xTruncate = gatheredTruncate,
    .xSync = gatheredSync,
    .xFileSize = gatheredFileSize,
    .xLock = gatheredLock,
    .xUnlock = gatheredUnlock,
    .xCheckReservedLock = gatheredCheckReservedLock,
    .xFileControl = gatheredFileControl,
    .xSectorSize = gatheredSectorSize,
    .xDeviceCharacteristics = gatheredDeviceCharacteristics,
};

static int gatheredOpen(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *base, int flags, int *outFlags) {
    (void)vfs;
    if ((flags & SQLITE_OPEN_WAL) == 0) {
        // SQLite allocated szOsFile bytes, more than the default VFS's file needs.
        return defaultVFS->xOpen(defaultVFS, name, base, flags, outFlags);
    }
    GatheredFile *file = (GatheredFile *)base;
    memset(file, 0, sizeof(GatheredFile));
    file->real = (sqlite3_file *)(file + 1);
    int rc = defaultVFS->xOpen(defaultVFS, name, file->real, flags, outFlags);
    // A failed open leaves pMethods NULL, so that SQLite does not close what never opened.
    if (rc == SQLITE_OK && file->real->pMethods != NULL) file->base.pMethods = &gatheredMethods;
    return rc;
}

// The rest of the VFS is the default one's.
static int gatheredDelete(sqlite3_vfs *vfs, const char *name, int syncDirectory) {
    (void)vfs;
    return defaultVFS->xDelete(defaultVFS, name, syncDirectory);
}
static int gatheredAccess(sqlite3_vfs *vfs, const char *name, int flags, int *result) {
    (void)vfs;
    return defaultVFS->xAccess(defaultVFS, name, flags, result);
}
static int gatheredFullPathname(sqlite3_vfs *vfs, const char *name, int size, char *out) {
    (void)vfs;
    return defaultVFS->xFullPathname(defaultVFS, name, size, out);
}
static void *gatheredDlOpen(sqlite3_vfs *vfs, const char *name) {
    (void)vfs;
    return defaultVFS->xDlOpen(defaultVFS, name);
}
static void gatheredDlError(sqlite3_vfs *vfs, int size, char *message) {
    (void)vfs;
    defaultVFS->xDlError(defaultVFS, size, message);
}
static void (*gatheredDlSym(sqlite3_vfs *vfs, void *library, const char *symbol))(void) {
    (void)vfs;
    return defaultVFS->xDlSym(defaultVFS, library, symbol);
}
static void gatheredDlClose(sqlite3_vfs *vfs, void *library) {
    (void)vfs;
    defaultVFS->xDlClose(defaultVFS, library);
}
static int gatheredRandomness(sqlite3_vfs *vfs, int size, char *out) {
    (void)vfs;
    return defaultVFS->xRandomness(defaultVFS, size, out);
}
static int gatheredSleep(sqlite3_vfs *vfs, int microseconds) {
    (void)vfs;
    return defaultVFS->xSleep(defaultVFS, microseconds);
}
static int gatheredCurrentTime(sqlite3_vfs *vfs, double *now) {
    (void)vfs;
    return defaultVFS->xCurrentTime(defaultVFS, now);
}
static int gatheredGetLastError(sqlite3_vfs *vfs, int size, char *message) {
    (void)vfs;
    return defaultVFS->xGetLastError(defaultVFS, size, message);
}
static int gatheredCurrentTimeInt64(sqlite3_vfs *vfs, sqlite3_int64 *now) {
    (void)vfs;
    return defaultVFS->xCurrentTimeInt64(defaultVFS, now);
}

static sqlite3_vfs gatheredVFS;
static int registration = SQLITE_OK;
static pthread_once_t registerOnce = PTHREAD_ONCE_INIT;

static void registerVFS(void) {
    defaultVFS = sqlite_nio_sqlite3_vfs_find(NULL);
    if (defaultVFS == NULL || defaultVFS->iVersion < 2) {
        registration = SQLITE_ERROR;
        return;
    }
    gatheredVFS = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(GatheredFile) + defaultVFS->szOsFile,
        .mxPathname = defaultVFS->mxPathname,
        .zName = switchboard_gathered_wal_vfs_name,
        .xOpen = gatheredOpen,
        .xDelete = gatheredDelete,
        .xAccess = gatheredAccess,
        .xFullPathname = gatheredFullPathname,
        .xDlOpen = gatheredDlOpen,
        .xDlError = gatheredDlError,
        .xDlSym = gatheredDlSym,
        .xDlClose = gatheredDlClose,
        .xRandomness = gatheredRandomness,
        .xSleep = gatheredSleep,
        .xCurrentTime = gatheredCurrentTime,
        .xGetLastError = gatheredGetLastError,
        .xCurrentTimeInt64 = gatheredCurrentTimeInt64,
    };
    registration = sqlite_nio_sqlite3_vfs_register(&gatheredVFS, 0);
}

int switchboard_gathered_wal_register(void) {
    pthread_once(&registerOnce, registerVFS);
    return registration;
}

int switchboard_gathered_wal_counts(sqlite3_file *base, sqlite3_int64 *writes, sqlite3_int64 *flushes) {
    if (base == NULL || base->pMethods != &gatheredMethods) return 0;
    GatheredFile *file = (GatheredFile *)base;
    *writes = file->writes;
    *flushes = file->flushes;
    return 1;
}
