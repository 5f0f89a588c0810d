/*
 * rfs_cred.c - S3 credentials: the environment, then the shared
 * credentials file (the AWS CLI's INI format: [profile], key = value).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_cred.h"

static rfs_err cred_fail(char *why, size_t cap, rfs_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static rfs_err cred_fail(char *why, size_t cap, rfs_err err, const char *fmt, ...)
{
    if (why && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, cap, fmt, ap);
        va_end(ap);
    }
    return err;
}

static void wipe_free(char *s)
{
    if (s) {
        volatile char *v = s;
        while (*v)
            *v++ = 0;
        free(s);
    }
}

void rfs_cred_free(rfs_cred *c)
{
    wipe_free(c->access_key);
    wipe_free(c->secret_key);
    wipe_free(c->session_token);
    memset(c, 0, sizeof *c);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* One "key = value" line of the wanted section into c. */
static int cred_line(rfs_cred *c, char *line)
{
    char *eq = strchr(line, '=');
    if (!eq)
        return 0;
    *eq = '\0';
    char *k = trim(line), *v = trim(eq + 1);
    char **dst = !strcmp(k, "aws_access_key_id")       ? &c->access_key
               : !strcmp(k, "aws_secret_access_key") ? &c->secret_key
               : !strcmp(k, "aws_session_token")     ? &c->session_token
                                                     : NULL;
    if (!dst)
        return 0;
    wipe_free(*dst);
    *dst = strdup(v);
    return *dst ? 0 : -1;
}

/* Is line "[profile]" (or the config file's "[profile NAME]" form)? -1: not a header. */
static int section_is(char *line, const char *profile)
{
    char *s = trim(line);
    size_t n = strlen(s);
    if (n < 2 || s[0] != '[' || s[n - 1] != ']')
        return -1;
    s[n - 1] = '\0';
    s = trim(s + 1);
    if (!strncmp(s, "profile ", 8))
        s = trim(s + 8);
    return strcmp(s, profile) == 0;
}

rfs_err rfs_cred_load_file(rfs_cred *c, const char *path, const char *profile, char *why,
                           size_t why_cap)
{
    memset(c, 0, sizeof *c);
    FILE *f = fopen(path, "r");
    if (!f)
        return cred_fail(why, why_cap, RFS_E_NOENT, "no S3 credentials: %s: %s", path,
                         strerror(errno));
    char line[4096];
    int in = 0, found = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        char *t = trim(line);
        if (*t == '#' || *t == ';' || *t == '\0')
            continue;
        int s = section_is(t, profile);
        if (s >= 0) {
            in = s;
            found |= s;
            continue;
        }
        if (in && cred_line(c, t) != 0)
            bad = 1;
    }
    fclose(f);
    explicit_bzero(line, sizeof line);
    if (bad) {
        rfs_cred_free(c);
        return RFS_E_NOMEM;
    }
    if (!found) {
        rfs_cred_free(c);
        return cred_fail(why, why_cap, RFS_E_NOENT, "no S3 credentials: %s has no profile [%s]",
                         path, profile);
    }
    if (!c->access_key || !c->secret_key || !*c->access_key || !*c->secret_key) {
        rfs_cred_free(c);
        return cred_fail(why, why_cap, RFS_E_CORRUPT, "%s: profile [%s] lacks %s", path, profile,
                         "aws_access_key_id or aws_secret_access_key");
    }
    snprintf(c->source, sizeof c->source, "%s [%s]", path, profile);
    return RFS_OK;
}

static rfs_err cred_from_env(rfs_cred *c)
{
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    const char *tok = getenv("AWS_SESSION_TOKEN");
    c->access_key = strdup(ak);
    c->secret_key = strdup(sk);
    c->session_token = tok && *tok ? strdup(tok) : NULL;
    if (!c->access_key || !c->secret_key || (tok && *tok && !c->session_token)) {
        rfs_cred_free(c);
        return RFS_E_NOMEM;
    }
    snprintf(c->source, sizeof c->source, "environment");
    return RFS_OK;
}

rfs_err rfs_cred_load(rfs_cred *c, char *why, size_t why_cap)
{
    memset(c, 0, sizeof *c);
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    if (ak && *ak && sk && *sk)
        return cred_from_env(c);
    const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE");
    const char *profile = getenv("AWS_PROFILE");
    char path[4096];
    if (!profile || !*profile)
        profile = "default";
    if (file && *file) {
        snprintf(path, sizeof path, "%s", file);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home)
            return cred_fail(why, why_cap, RFS_E_NOENT, "no S3 credentials: AWS_ACCESS_KEY_ID "
                             "and AWS_SECRET_ACCESS_KEY are not set and HOME is unset "
                             "(-o s3_anonymous for a public bucket)");
        snprintf(path, sizeof path, "%s/.aws/credentials", home);
    }
    rfs_err err = rfs_cred_load_file(c, path, profile, why, why_cap);
    if (err == RFS_E_NOENT && why && why_cap) {
        size_t n = strlen(why);
        snprintf(why + n, why_cap - n, " (and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not "
                 "set; -o s3_anonymous for a public bucket)");
    }
    return err;
}
