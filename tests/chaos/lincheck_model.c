/*
 * lincheck_model.c - the sequential specification the checker holds the
 * store to: what each operation requires of the map at its instant, and
 * how it changes it (lincheck.h lists the operations).
 *
 * A state gives each key of a group a value id, 0 for "does not exist".
 * Every value id > 0 names a value some write wrote; an id of -1 (a cas
 * expecting a value nobody ever wrote) matches no state.
 */
#include "tests/chaos/lincheck_internal.h"

static bool fits_delete(const struct lincheck_sop *o, int held, int *key, int *value)
{
    switch (o->rec->outcome) {
    case LINCHECK_OK: /* it deleted something: the key existed */
        *key = o->key;
        *value = 0;
        return held != 0;
    case LINCHECK_MISSING:
        return held == 0;
    default: /* unknown: takes effect whatever the key holds */
        *key = o->key;
        *value = 0;
        return true;
    }
}

static bool fits_cas(const struct lincheck_sop *o, int held, int *key, int *value)
{
    switch (o->rec->outcome) {
    case LINCHECK_OK:
        *key = o->key;
        *value = o->value;
        return held == o->expected;
    case LINCHECK_MISMATCH: /* it reported what it found: something other than expected */
        return held == o->held && held != o->expected && held != 0;
    case LINCHECK_MISSING:
        return held == 0;
    default: /* unknown: swaps when it finds what it expects, else changes nothing */
        if (held == o->expected) {
            *key = o->key;
            *value = o->value;
        }
        return true;
    }
}

/* Exactly the covered keys that exist are in the result. */
static bool fits_list(const struct lincheck_sop *o, const int *st)
{
    for (int i = 0; i < o->n_cover; i++)
        if ((st[o->first + i] != 0) != o->present[i])
            return false;
    return true;
}

bool lincheck_fits(const struct lincheck_sop *o, const int *st, int *key, int *value)
{
    *key = -1;
    switch (o->rec->kind) {
    case LINCHECK_PUT:
        *key = o->key;
        *value = o->value;
        return true;
    case LINCHECK_GET:
        return st[o->key] == (o->rec->outcome == LINCHECK_OK ? o->value : 0);
    case LINCHECK_DELETE:
        return fits_delete(o, st[o->key], key, value);
    case LINCHECK_CAS:
        return fits_cas(o, st[o->key], key, value);
    case LINCHECK_LIST:
        return fits_list(o, st);
    }
    return false;
}
