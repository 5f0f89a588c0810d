/*
 * rfs_cred.h - S3 credentials from the standard places (docs/remote.md).
 *
 * Order: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 * else the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default
 * ~/.aws/credentials), section [AWS_PROFILE] (default "default"), keys
 * aws_access_key_id, aws_secret_access_key, aws_session_token.
 *
 * Contract: secrets live only in the rfs_cred (heap) and are wiped by
 * rfs_cred_free; no function here prints or puts a secret into why (a
 * reason names the file, the profile and the missing key, never a value).
 * Not thread-safe while loading (reads the environment).
 */
#ifndef RFS_CRED_H
#define RFS_CRED_H

#include <stddef.h>

#include "rfs_tile.h"

typedef struct rfs_cred {
    char *access_key;
    char *secret_key;
    char *session_token; /* NULL when none */
    char source[160];    /* where they came from, for messages: "environment", a file */
} rfs_cred;

/*
 * Load credentials (the order above).  Errors: RFS_E_NOENT when none are
 * found anywhere (why says where it looked), RFS_E_CORRUPT for a file that
 * names the profile with a key missing, RFS_E_NOMEM.
 */
rfs_err rfs_cred_load(rfs_cred *c, char *why, size_t why_cap);
/* The file part only: profile section of an INI credentials file. */
rfs_err rfs_cred_load_file(rfs_cred *c, const char *path, const char *profile, char *why,
                           size_t why_cap);
void rfs_cred_free(rfs_cred *c);

#endif
