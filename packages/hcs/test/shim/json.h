/*
 * Tiny strict JSON parser for the HCS test shim. The shim validates every
 * document it is given the way HCS does: reject what does not parse
 * (HCS_E_INVALID_JSON) before looking at any field.
 */
#ifndef HCS_SHIM_JSON_H
#define HCS_SHIM_JSON_H

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jv {
  jtype t;
  int b;
  double n;
  char *s;           /* J_STR: UTF-8, NUL-terminated (embedded NULs rejected) */
  struct jv **items; /* J_ARR/J_OBJ values */
  char **keys;       /* J_OBJ keys */
  int len;
} jv;

typedef struct {
  const char *p;
  int depth;
} jparser;

static void jfree(jv *v) {
  if (!v) return;
  for (int i = 0; i < v->len; i++) {
    jfree(v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->s);
  free(v);
}

static jv *jnew(jtype t) {
  jv *v = calloc(1, sizeof(jv));
  v->t = t;
  return v;
}

static void jws(jparser *ps) {
  while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++;
}

static int jhex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

static void jput_utf8(char **buf, size_t *len, size_t *cap, unsigned cp) {
  if (*len + 5 > *cap) {
    *cap = (*cap + 5) * 2;
    *buf = realloc(*buf, *cap);
  }
  char *o = *buf + *len;
  if (cp < 0x80) { o[0] = (char)cp; *len += 1; }
  else if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); *len += 2; }
  else if (cp < 0x10000) { o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F)); *len += 3; }
  else { o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); *len += 4; }
}

static char *jparse_string_raw(jparser *ps) {
  if (*ps->p != '"') return NULL;
  ps->p++;
  size_t len = 0, cap = 16;
  char *buf = malloc(cap);
  for (;;) {
    unsigned char c = (unsigned char)*ps->p;
    if (c == 0 || c < 0x20) { free(buf); return NULL; }
    if (c == '"') { ps->p++; break; }
    if (c == '\\') {
      ps->p++;
      char e = *ps->p++;
      unsigned cp;
      switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
          if (!jhex4(ps->p, &cp)) { free(buf); return NULL; }
          ps->p += 4;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned lo;
            if (ps->p[0] != '\\' || ps->p[1] != 'u' || !jhex4(ps->p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) { free(buf); return NULL; }
            ps->p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) { free(buf); return NULL; }
          if (cp == 0) { free(buf); return NULL; } /* Go (hcsshim) and HCS both refuse embedded NULs in practice */
          break;
        default: free(buf); return NULL;
      }
      jput_utf8(&buf, &len, &cap, cp);
      continue;
    }
    if (len + 2 > cap) { cap *= 2; buf = realloc(buf, cap); }
    buf[len++] = (char)c;
    ps->p++;
  }
  buf[len] = 0;
  return buf;
}

static jv *jparse_value(jparser *ps);

static int jpush(jv *v, char *key, jv *item) {
  v->items = realloc(v->items, sizeof(jv *) * (size_t)(v->len + 1));
  if (v->t == J_OBJ) {
    v->keys = realloc(v->keys, sizeof(char *) * (size_t)(v->len + 1));
    v->keys[v->len] = key;
  }
  v->items[v->len++] = item;
  return 1;
}

static jv *jparse_value(jparser *ps) {
  if (++ps->depth > 64) return NULL;
  jws(ps);
  jv *v = NULL;
  char c = *ps->p;
  if (c == '{') {
    ps->p++;
    v = jnew(J_OBJ);
    jws(ps);
    if (*ps->p == '}') { ps->p++; goto done; }
    for (;;) {
      jws(ps);
      char *k = jparse_string_raw(ps);
      if (!k) goto fail;
      jws(ps);
      if (*ps->p != ':') { free(k); goto fail; }
      ps->p++;
      jv *item = jparse_value(ps);
      if (!item) { free(k); goto fail; }
      jpush(v, k, item);
      jws(ps);
      if (*ps->p == ',') { ps->p++; continue; }
      if (*ps->p == '}') { ps->p++; break; }
      goto fail;
    }
  } else if (c == '[') {
    ps->p++;
    v = jnew(J_ARR);
    jws(ps);
    if (*ps->p == ']') { ps->p++; goto done; }
    for (;;) {
      jv *item = jparse_value(ps);
      if (!item) goto fail;
      jpush(v, NULL, item);
      jws(ps);
      if (*ps->p == ',') { ps->p++; continue; }
      if (*ps->p == ']') { ps->p++; break; }
      goto fail;
    }
  } else if (c == '"') {
    char *s = jparse_string_raw(ps);
    if (!s) return NULL;
    v = jnew(J_STR);
    v->s = s;
  } else if (strncmp(ps->p, "true", 4) == 0) { ps->p += 4; v = jnew(J_BOOL); v->b = 1; }
  else if (strncmp(ps->p, "false", 5) == 0) { ps->p += 5; v = jnew(J_BOOL); v->b = 0; }
  else if (strncmp(ps->p, "null", 4) == 0) { ps->p += 4; v = jnew(J_NULL); }
  else if (c == '-' || (c >= '0' && c <= '9')) {
    /* Strict JSON number grammar; strtod alone would accept hex, inf and leading '+'. */
    const char *q = ps->p;
    if (*q == '-') q++;
    if (*q == '0') q++;
    else if (*q >= '1' && *q <= '9') while (isdigit((unsigned char)*q)) q++;
    else return NULL;
    if (*q == '.') { q++; if (!isdigit((unsigned char)*q)) return NULL; while (isdigit((unsigned char)*q)) q++; }
    if (*q == 'e' || *q == 'E') { q++; if (*q == '+' || *q == '-') q++; if (!isdigit((unsigned char)*q)) return NULL; while (isdigit((unsigned char)*q)) q++; }
    v = jnew(J_NUM);
    v->n = strtod(ps->p, NULL);
    ps->p = q;
  } else {
    return NULL;
  }
done:
  ps->depth--;
  return v;
fail:
  jfree(v);
  return NULL;
}

/* Parses a whole document; NULL when it is not exactly one JSON value. */
static jv *jparse(const char *text) {
  if (!text) return NULL;
  jparser ps = {text, 0};
  jv *v = jparse_value(&ps);
  if (!v) return NULL;
  jws(&ps);
  if (*ps.p) { jfree(v); return NULL; }
  return v;
}

static jv *jget(const jv *o, const char *key) {
  if (!o || o->t != J_OBJ) return NULL;
  jv *found = NULL;
  for (int i = 0; i < o->len; i++)
    if (strcmp(o->keys[i], key) == 0) found = o->items[i]; /* last duplicate wins, like Go's decoder */
  return found;
}

static int jis_int(const jv *v) { return v && v->t == J_NUM && v->n == (double)(int64_t)v->n; }

#endif
