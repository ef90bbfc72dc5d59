/*
 * Linux stand-in for computecore.dll (default build) and vmcompute.dll
 * (-DSHIM_V1), exporting the same function names with the same C types as
 * docs/specs section 2/3 and the shim contract of section 10.3:
 *   - int32_t HRESULTs, pointer-sized handles, const char16_t * UTF-16 inputs,
 *     char16_t ** outputs allocated with malloc and released by the exported
 *     LocalFree / CoTaskMemFree;
 *   - compute systems kept as an in-memory state machine that validates every
 *     JSON document it is given;
 *   - v2: operations complete on a shim thread, HcsWaitForOperationResult
 *     honours its timeout; v1: Create/Start/... return 0xC0370103 and complete
 *     through notification callbacks invoked from another thread, queued until
 *     a callback is registered.
 * Test-only exports (Shim*) expose live handle/allocation counters, call
 * counters, fault injection and simulated exits.
 *
 * Build flags:
 *   -DSHIM_V1             vmcompute.dll flavour
 *   -DSHIM_OMIT_REQUIRED  computecore without HcsGrantVmAccess (forces fallback)
 *   -DSHIM_OMIT_OPTIONAL  computecore without HcsWaitFor{ComputeSystem,Process}Exit
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uchar.h>
#include <unistd.h>

#include "json.h"

#define EXPORT __attribute__((visibility("default")))

typedef int32_t HRESULT;
typedef void *HANDLE;
typedef uint32_t DWORD;

#define S_OK 0
#define HR(x) ((HRESULT)(x))
#define E_NOTIMPL HR(0x80004001)
#define E_INVALIDARG HR(0x80070057)
#define E_ACCESSDENIED HR(0x80070005)
#define E_HANDLE HR(0x80070006)
#define E_INVALID_DATA HR(0x8007000D)
#define E_NOT_FOUND HR(0x80070490)
#define E_ALREADY_EXISTS HR(0x800700B7)
#define HCS_E_INVALID_STATE HR(0x80370105)
#define HCS_E_INVALID_JSON HR(0x8037010D)
#define HCS_E_SYSTEM_NOT_FOUND HR(0x8037010E)
#define HCS_E_SYSTEM_ALREADY_EXISTS HR(0x8037010F)
#define HCS_E_SYSTEM_ALREADY_STOPPED HR(0x80370110)
#define HCS_E_OPERATION_NOT_STARTED HR(0x80370115)
#define HCS_E_OPERATION_ALREADY_STARTED HR(0x80370116)
#define HCS_E_OPERATION_PENDING HR(0x80370117)
#define HCS_E_OPERATION_TIMEOUT HR(0x80370118)
#define HCS_E_CALLBACK_ALREADY_SET HR(0x80370119)
#define HCS_E_PROCESS_ALREADY_STOPPED HR(0x8037011F)
#define V1_PENDING HR(0xC0370103)
#define V1_INVALID_STATE HR(0xC0370105)
#define V1_UNEXPECTED_EXIT HR(0xC0370106)
#define V1_INVALID_JSON HR(0xC037010D)
#define V1_NOT_FOUND HR(0xC037010E)
#define V1_ALREADY_STOPPED HR(0xC0370110)

#ifdef SHIM_V1
#define C_NOT_FOUND V1_NOT_FOUND
#define C_INVALID_JSON V1_INVALID_JSON
#define C_ALREADY_STOPPED V1_ALREADY_STOPPED
#define C_MODIFY_STOPPED V1_INVALID_STATE
#define C_INVALID_STATE V1_INVALID_STATE
#else
#define C_NOT_FOUND HCS_E_SYSTEM_NOT_FOUND
#define C_INVALID_JSON HCS_E_INVALID_JSON
#define C_ALREADY_STOPPED HCS_E_SYSTEM_ALREADY_STOPPED
#define C_MODIFY_STOPPED HCS_E_SYSTEM_ALREADY_STOPPED
#define C_INVALID_STATE HCS_E_INVALID_STATE
#endif

#define GENERIC_ALL 0x10000000u
#define MAX_CTRL 4
#define MAX_LUN 64

/* v1 notification types (hcsshim internal/hcs/callback.go). */
#define N_EXITED 0x1u
#define N_CREATE 0x2u
#define N_START 0x3u
#define N_PAUSE 0x4u
#define N_RESUME 0x5u
#define N_SERVICE_DISCONNECT 0x01000000u

typedef void (*notif_cb)(DWORD type, void *ctx, HRESULT status, const char16_t *data);

typedef struct {
  DWORD ProcessId;
  DWORD Reserved;
  HANDLE StdInput;
  HANDLE StdOutput;
  HANDLE StdError;
} HCS_PROCESS_INFORMATION;

/* ------------------------------------------------------------------------ */
/* Global state                                                              */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t g_alloc_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_pending;           /* shim threads still running */
static uint32_t g_delay_ms = 5; /* completion latency of asynchronous work */
static int g_schema_major = 2, g_schema_minor = 5;
static uint32_t g_guid_counter = 1;
static char g_last_doc[16384];

/* ---- tracked allocations (strings handed to the caller) ----------------- */

typedef struct alloc_node {
  void *p;
  struct alloc_node *next;
} alloc_node;
static alloc_node *g_allocs;
static int g_live_allocs, g_bad_frees;

static void *track_alloc(size_t n) {
  void *p = malloc(n);
  alloc_node *a = malloc(sizeof *a);
  pthread_mutex_lock(&g_alloc_lock);
  a->p = p;
  a->next = g_allocs;
  g_allocs = a;
  g_live_allocs++;
  pthread_mutex_unlock(&g_alloc_lock);
  return p;
}

static int untrack(void *p) {
  pthread_mutex_lock(&g_alloc_lock);
  for (alloc_node **pp = &g_allocs; *pp; pp = &(*pp)->next) {
    if ((*pp)->p == p) {
      alloc_node *a = *pp;
      *pp = a->next;
      free(a);
      g_live_allocs--;
      pthread_mutex_unlock(&g_alloc_lock);
      return 1;
    }
  }
  g_bad_frees++;
  pthread_mutex_unlock(&g_alloc_lock);
  return 0;
}

/* Both free functions are exported so the binding's choice can be tested (spec 1.2). */
EXPORT void *LocalFree(void *p) {
  if (!p) return NULL;
  if (!untrack(p)) return p; /* LocalFree returns the handle on failure */
  free(p);
  return NULL;
}

EXPORT void CoTaskMemFree(void *p) {
  if (p && untrack(p)) free(p);
}

/* ---- call counters and fault injection ---------------------------------- */

typedef struct {
  char name[64];
  int count;
} call_count;
static call_count g_calls[96];
static int g_ncalls;

static void count_call(const char *name) {
  pthread_mutex_lock(&g_alloc_lock);
  for (int i = 0; i < g_ncalls; i++)
    if (strcmp(g_calls[i].name, name) == 0) { g_calls[i].count++; pthread_mutex_unlock(&g_alloc_lock); return; }
  if (g_ncalls < 96) {
    snprintf(g_calls[g_ncalls].name, sizeof g_calls[0].name, "%s", name);
    g_calls[g_ncalls++].count = 1;
  }
  pthread_mutex_unlock(&g_alloc_lock);
}

typedef struct {
  char name[64];
  HRESULT hr;
  int async;
  int used;
} fault;
static fault g_faults[16];

/* Consumes the first armed fault for `name`. */
static int take_fault(const char *name, HRESULT *hr, int *async) {
  int hit = 0;
  pthread_mutex_lock(&g_alloc_lock);
  for (int i = 0; i < 16; i++) {
    if (g_faults[i].used && strcmp(g_faults[i].name, name) == 0) {
      *hr = g_faults[i].hr;
      if (async) *async = g_faults[i].async;
      g_faults[i].used = 0;
      hit = 1;
      break;
    }
  }
  pthread_mutex_unlock(&g_alloc_lock);
  return hit;
}

/* ---- string helpers ----------------------------------------------------- */

typedef struct {
  char *p;
  size_t len, cap;
} sb;

static void sb_add(sb *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

static void sb_printf(sb *b, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_jstr(sb *b, const char *s) {
  sb_add(b, "\"", 1);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { sb_add(b, "\\", 1); sb_add(b, (char *)&c, 1); }
    else if (c < 0x20) sb_printf(b, "\\u%04x", c);
    else sb_add(b, (char *)&c, 1);
  }
  sb_add(b, "\"", 1);
}

/* UTF-16LE (char16_t, never wchar_t: it is 32-bit on Linux) to UTF-8. NULL stays NULL. */
static char *u16to8(const char16_t *s) {
  if (!s) return NULL;
  size_t len = 0, cap = 16;
  char *buf = malloc(cap);
  for (size_t i = 0; s[i]; i++) {
    unsigned cp = s[i];
    if (cp >= 0xD800 && cp <= 0xDBFF && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
      cp = 0x10000 + ((cp - 0xD800) << 10) + (s[i + 1] - 0xDC00);
      i++;
    }
    jput_utf8(&buf, &len, &cap, cp);
  }
  buf[len] = 0;
  return buf;
}

static char16_t *u8to16(const char *s, int tracked) {
  size_t n = strlen(s);
  char16_t *out = tracked ? track_alloc((n + 1) * sizeof(char16_t)) : malloc((n + 1) * sizeof(char16_t));
  size_t o = 0;
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned cp;
    if (*p < 0x80) cp = *p++;
    else if ((*p & 0xE0) == 0xC0) { cp = ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu); p += 2; }
    else if ((*p & 0xF0) == 0xE0) { cp = ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu); p += 3; }
    else { cp = ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu); p += 4; }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out[o++] = (char16_t)(0xD800 + (cp >> 10));
      out[o++] = (char16_t)(0xDC00 + (cp & 0x3FF));
    } else out[o++] = (char16_t)cp;
  }
  out[o] = 0;
  return out;
}

/* Hands a document to the caller through a PWSTR* out-parameter (caller frees). */
static void put_out(char16_t **out, const char *json) {
  if (out) *out = json ? u8to16(json, 1) : NULL;
}

static void remember_doc(const char *s) {
  pthread_mutex_lock(&g_alloc_lock);
  snprintf(g_last_doc, sizeof g_last_doc, "%s", s ? s : "<null>");
  pthread_mutex_unlock(&g_alloc_lock);
}

/* A ResultError document (spec 6.3). Caller frees with free(). */
static char *error_doc(HRESULT hr, const char *fn, const char *msg) {
  sb b = {0};
  sb_printf(&b, "{\"Error\":%d,\"ErrorMessage\":", hr);
  sb_jstr(&b, msg);
  sb_add(&b, ",\"ErrorEvents\":[{\"Message\":", 27);
  sb_jstr(&b, msg);
  sb_printf(&b, ",\"StackTrace\":\"shim!%s\",\"Provider\":\"17103e3f-3c6e-4677-bb17-3b267eb5be57\",\"EventId\":%d,\"Flags\":0,\"Source\":\"hcs-shim\",\"Data\":[{\"Type\":\"String\",\"Value\":\"ignored\"}]}]}", fn, 0x2000 + (hr & 0xFF));
  return b.p;
}

static int is_guid(const char *s) {
  static const int dash[] = {8, 13, 18, 23};
  if (!s || strlen(s) != 36) return 0;
  for (int i = 0; i < 36; i++) {
    int want_dash = i == dash[0] || i == dash[1] || i == dash[2] || i == dash[3];
    if (want_dash) { if (s[i] != '-') return 0; }
    else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F'))) return 0;
  }
  return 1;
}

static void sleep_ms(uint32_t ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

/* ------------------------------------------------------------------------ */
/* Objects                                                                   */

enum { ST_CREATING, ST_CREATED, ST_RUNNING, ST_PAUSED, ST_STOPPED };
static const char *state_name(int st) {
  static const char *names[] = {"Creating", "Created", "Running", "Paused", "Stopped"};
  return names[st];
}

typedef struct process {
  uint32_t pid;
  int exited;
  uint32_t exit_code;
  struct process *next;
} process;

typedef struct system {
  char *id, *owner, *system_type;
  char runtime_id[37];
  int state, listed, refs, pins, terminate_on_close;
  char exit_type[32];
  HRESULT exit_status;
  char *ctrl_keys[MAX_CTRL];
  int nctrl;
  char *att[MAX_CTRL][MAX_LUN];
  char *mapped[16]; /* v1 MappedVirtualDisk ContainerPaths */
  char *pending_doc; /* create document, applied when the create completes */
  process *procs;
  uint32_t next_pid;
  struct system *next;
} system_t;

typedef struct grant {
  char *id, *path;
  struct grant *next;
} grant;

enum { H_SYS = 1, H_OP, H_PROC, H_CB, H_PIPE };
enum { OP_UNUSED, OP_RUNNING, OP_DONE };

typedef struct notif {
  DWORD type;
  HRESULT status;
  char *data;
} notif;

typedef struct handle {
  uint32_t magic;
  int kind;
  int closed; /* removed from the registry; memory kept while a worker uses it */
  struct handle *next;
  system_t *sys;
  process *proc;
  /* H_SYS (v1): callback and queue of notifications raised before registration */
  struct handle *cb;
  int ever_registered;
  notif queue[16];
  int nqueue;
  /* H_CB */
  notif_cb fn;
  void *ctx;
  struct handle *owner;
  int delivering, dead;
  /* H_OP */
  int op_state, op_busy;
  HRESULT op_hr;
  char *op_doc;
  HCS_PROCESS_INFORMATION op_info;
} handle;

#define MAGIC 0x48435348u
static handle *g_handles;
static int g_live_handles;
static system_t *g_systems;
static grant *g_grants;

static handle *new_handle(int kind) {
  handle *h = calloc(1, sizeof *h);
  h->magic = MAGIC;
  h->kind = kind;
  h->next = g_handles;
  g_handles = h;
  g_live_handles++;
  return h;
}

/* Validates a caller-supplied handle against the registry (never dereferences it first). */
static handle *find_handle(void *p, int kind) {
  for (handle *h = g_handles; h; h = h->next)
    if (h == p && h->kind == kind) return h;
  return NULL;
}

static void unlink_handle(handle *h) {
  for (handle **pp = &g_handles; *pp; pp = &(*pp)->next)
    if (*pp == h) { *pp = h->next; g_live_handles--; break; }
  h->closed = 1;
}

static system_t *find_system(const char *id) {
  for (system_t *s = g_systems; s; s = s->next)
    if (s->listed && strcmp(s->id, id) == 0) return s;
  return NULL;
}

static void free_system(system_t *s) {
  for (system_t **pp = &g_systems; *pp; pp = &(*pp)->next)
    if (*pp == s) { *pp = s->next; break; }
  free(s->id); free(s->owner); free(s->system_type); free(s->pending_doc);
  for (int i = 0; i < MAX_CTRL; i++) {
    free(s->ctrl_keys[i]);
    for (int l = 0; l < MAX_LUN; l++) free(s->att[i][l]);
  }
  for (int i = 0; i < 16; i++) free(s->mapped[i]);
  while (s->procs) { process *p = s->procs; s->procs = p->next; free(p); }
  free(s);
}

static void maybe_free_system(system_t *s) {
  if (s->refs == 0 && s->pins == 0 && !s->listed) free_system(s);
}

static int has_grant(const char *id, const char *path) {
  for (grant *g = g_grants; g; g = g->next)
    if (strcmp(g->id, id) == 0 && strcmp(g->path, path) == 0) return 1;
  return 0;
}

static void stop_system(system_t *s, const char *exit_type, HRESULT status) {
  s->state = ST_STOPPED;
  snprintf(s->exit_type, sizeof s->exit_type, "%s", exit_type);
  s->exit_status = status;
  for (process *p = s->procs; p; p = p->next)
    if (!p->exited) { p->exited = 1; p->exit_code = 0xFFFFFFFFu; }
  pthread_cond_broadcast(&g_cond);
}


/* ------------------------------------------------------------------------ */
/* Document validation                                                       */

typedef struct {
  char msg[256];
} verr;

static HRESULT bad(verr *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return E_INVALID_DATA;
}

static int in_list(const char *k, const char *const *allowed) {
  for (; *allowed; allowed++)
    if (strcmp(k, *allowed) == 0) return 1;
  return 0;
}

/* HCS refuses unknown fields with ERROR_INVALID_DATA; so do we, which catches typos in builders. */
static HRESULT only_keys(const jv *o, const char *where, const char *const *allowed, verr *e) {
  if (!o || o->t != J_OBJ) return bad(e, "%s must be an object", where);
  for (int i = 0; i < o->len; i++)
    if (!in_list(o->keys[i], allowed)) return bad(e, "unknown field %s.%s", where, o->keys[i]);
  return S_OK;
}

static HRESULT want(const jv *o, const char *key, jtype t, int required, const char *where, verr *e) {
  jv *v = jget(o, key);
  if (!v) return required ? bad(e, "%s.%s is required", where, key) : S_OK;
  if (v->t != t) return bad(e, "%s.%s has the wrong type", where, key);
  if (t == J_STR && required && !v->s[0]) return bad(e, "%s.%s must not be empty", where, key);
  return S_OK;
}

#define TRY(x) do { HRESULT _hr = (x); if (_hr < 0) return _hr; } while (0)

static HRESULT validate_attachment(const jv *a, const char *where, verr *e) {
  static const char *const keys[] = {"Type", "Path", "ReadOnly", "IgnoreFlushes", "CachingMode", "NoWriteHardening",
                                     "DisableExpansionOptimization", "IgnoreRelativeLocator", "CaptureIoAttributionContext",
                                     "SupportCompressedVolumes", "AlwaysAllowSparseFiles", "ExtensibleVirtualDiskType", NULL};
  static const char *const types[] = {"VirtualDisk", "PassThru", "Iso", "ExtensibleVirtualDisk", NULL};
  TRY(only_keys(a, where, keys, e));
  TRY(want(a, "Type", J_STR, 1, where, e));
  TRY(want(a, "Path", J_STR, 1, where, e));
  TRY(want(a, "ReadOnly", J_BOOL, 0, where, e));
  if (!in_list(jget(a, "Type")->s, types)) return bad(e, "%s.Type %s is not supported", where, jget(a, "Type")->s);
  return S_OK;
}

static HRESULT parse_lun(const char *s, int *lun) {
  char *end;
  if (!*s || !(s[0] >= '0' && s[0] <= '9')) return E_INVALID_DATA;
  long v = strtol(s, &end, 10);
  if (*end || v < 0 || v >= MAX_LUN) return E_INVALID_DATA;
  *lun = (int)v;
  return S_OK;
}

static HRESULT validate_vm(const jv *vm, system_t *s, verr *e) {
  static const char *const vm_keys[] = {"Version", "StopOnReset", "Chipset", "ComputeTopology", "Devices", "GuestState",
                                        "RestoreState", "RegistryChanges", "StorageQoS", "DebugOptions", "GuestConnection",
                                        "SecuritySettings", "ResourcePartitionId", "MigrationOptions", NULL};
  static const char *const chipset_keys[] = {"Uefi", "LinuxKernelDirect", "IsNumLockDisabled", "BaseBoardSerialNumber",
                                             "ChassisSerialNumber", "ChassisAssetTag", "UseUtc", "FirmwareFile", NULL};
  static const char *const lkd_keys[] = {"KernelFilePath", "InitRdPath", "KernelCmdLine", NULL};
  static const char *const topo_keys[] = {"Memory", "Processor", "Numa", NULL};
  static const char *const mem_keys[] = {"SizeInMB", "Backing", "AllowOvercommit", "EnableHotHint", "EnableColdHint",
                                         "EnableColdDiscardHint", "EnableDeferredCommit", "LowMmioGapInMB", "HighMmioBaseInMB",
                                         "HighMmioGapInMB", "SlitType", NULL};
  static const char *const cpu_keys[] = {"Count", "Limit", "Weight", "Reservation", "CpuGroup", "NumaProcessorsSettings", NULL};
  static const char *const dev_keys[] = {"ComPorts", "Scsi", "VirtualPMem", "NetworkAdapters", "VideoMonitor", "Keyboard", "Mouse",
                                         "HvSocket", "EnhancedModeVideo", "GuestCrashReporting", "VirtualSmb", "Plan9", "Battery",
                                         "FlexibleIov", "SharedMemory", "VirtualPci", NULL};
  static const char *const hvs_cfg_keys[] = {"DefaultBindSecurityDescriptor", "DefaultConnectSecurityDescriptor", "ServiceTable", NULL};
  static const char *const svc_keys[] = {"BindSecurityDescriptor", "ConnectSecurityDescriptor", "AllowWildcardBinds", "Disabled", NULL};
  static const char *const scsi_keys[] = {"Attachments", NULL};
  static const char *const hvs_keys[] = {"HvSocketConfig", NULL};
  static const char *const p9_keys[] = {"Shares", NULL};
  static const char *const backing[] = {"Physical", "Virtual", "Hybrid", NULL};

  TRY(only_keys(vm, "VirtualMachine", vm_keys, e));
  TRY(want(vm, "StopOnReset", J_BOOL, 0, "VirtualMachine", e));
  jv *chipset = jget(vm, "Chipset");
  if (!chipset) return bad(e, "VirtualMachine.Chipset is required");
  TRY(only_keys(chipset, "Chipset", chipset_keys, e));
  jv *lkd = jget(chipset, "LinuxKernelDirect");
  jv *uefi = jget(chipset, "Uefi");
  if (!lkd == !uefi) return bad(e, "Chipset needs exactly one of Uefi or LinuxKernelDirect");
  if (lkd) {
    TRY(only_keys(lkd, "LinuxKernelDirect", lkd_keys, e));
    TRY(want(lkd, "KernelFilePath", J_STR, 1, "LinuxKernelDirect", e));
    TRY(want(lkd, "InitRdPath", J_STR, 0, "LinuxKernelDirect", e));
    TRY(want(lkd, "KernelCmdLine", J_STR, 0, "LinuxKernelDirect", e));
  } else if (uefi->t != J_OBJ) return bad(e, "Chipset.Uefi must be an object");

  jv *topo = jget(vm, "ComputeTopology");
  if (!topo) return bad(e, "VirtualMachine.ComputeTopology is required");
  TRY(only_keys(topo, "ComputeTopology", topo_keys, e));
  jv *mem = jget(topo, "Memory");
  if (!mem) return bad(e, "ComputeTopology.Memory is required");
  TRY(only_keys(mem, "Memory", mem_keys, e));
  jv *size = jget(mem, "SizeInMB");
  if (!jis_int(size) || size->n <= 0) return bad(e, "Memory.SizeInMB must be a positive integer");
  /* hcsshim rounds memory up to 2 MB; Hyper-V refuses odd sizes. */
  if ((int64_t)size->n % 2) return bad(e, "Memory.SizeInMB must be a multiple of 2");
  TRY(want(mem, "AllowOvercommit", J_BOOL, 0, "Memory", e));
  jv *bk = jget(mem, "Backing");
  if (bk && (bk->t != J_STR || !in_list(bk->s, backing))) return bad(e, "Memory.Backing is invalid");
  jv *cpu = jget(topo, "Processor");
  if (!cpu) return bad(e, "ComputeTopology.Processor is required");
  TRY(only_keys(cpu, "Processor", cpu_keys, e));
  jv *count = jget(cpu, "Count");
  if (!jis_int(count) || count->n < 1 || count->n > 64) return bad(e, "Processor.Count must be 1..64");

  jv *dev = jget(vm, "Devices");
  if (!dev) return S_OK;
  TRY(only_keys(dev, "Devices", dev_keys, e));
  jv *scsi = jget(dev, "Scsi");
  if (scsi) {
    if (scsi->t != J_OBJ) return bad(e, "Devices.Scsi must be an object");
    if (scsi->len > MAX_CTRL) return bad(e, "at most %d SCSI controllers", MAX_CTRL);
    for (int i = 0; i < scsi->len; i++) {
      jv *c = scsi->items[i];
      TRY(only_keys(c, "Scsi controller", scsi_keys, e));
      for (int k = 0; k < i; k++)
        if (strcmp(scsi->keys[k], scsi->keys[i]) == 0) return bad(e, "duplicate SCSI controller %s", scsi->keys[i]);
      s->ctrl_keys[s->nctrl++] = strdup(scsi->keys[i]);
      jv *atts = jget(c, "Attachments");
      if (atts) {
        if (atts->t != J_OBJ) return bad(e, "Attachments must be an object");
        for (int a = 0; a < atts->len; a++) {
          int lun;
          if (parse_lun(atts->keys[a], &lun) < 0) return bad(e, "invalid LUN %s", atts->keys[a]);
          TRY(validate_attachment(atts->items[a], "Attachment", e));
          s->att[i][lun] = strdup(jget(atts->items[a], "Path")->s);
        }
      }
    }
  }
  jv *hvs = jget(dev, "HvSocket");
  if (hvs) {
    TRY(only_keys(hvs, "HvSocket", hvs_keys, e));
    jv *cfg = jget(hvs, "HvSocketConfig");
    if (cfg) {
      TRY(only_keys(cfg, "HvSocketConfig", hvs_cfg_keys, e));
      for (int i = 0; i < 2; i++) {
        jv *sd = jget(cfg, hvs_cfg_keys[i]);
        if (sd && (sd->t != J_STR || strncmp(sd->s, "D:", 2) != 0)) return bad(e, "%s must be an SDDL string", hvs_cfg_keys[i]);
      }
      jv *table = jget(cfg, "ServiceTable");
      if (table) {
        if (table->t != J_OBJ) return bad(e, "ServiceTable must be an object");
        for (int i = 0; i < table->len; i++) {
          if (!is_guid(table->keys[i])) return bad(e, "ServiceTable key %s is not a GUID", table->keys[i]);
          TRY(only_keys(table->items[i], "ServiceTable entry", svc_keys, e));
          TRY(want(table->items[i], "AllowWildcardBinds", J_BOOL, 0, "ServiceTable entry", e));
          TRY(want(table->items[i], "Disabled", J_BOOL, 0, "ServiceTable entry", e));
        }
      }
    }
  }
  jv *p9 = jget(dev, "Plan9");
  if (p9) {
    TRY(only_keys(p9, "Plan9", p9_keys, e));
    TRY(want(p9, "Shares", J_ARR, 0, "Plan9", e));
  }
  return S_OK;
}

/* The 2017 ContainerConfig accepted by vmcompute.dll before schema 2 (spec 9). */
__attribute__((unused)) static HRESULT validate_v1_config(const jv *doc, system_t *s, verr *e) {
  static const char *const keys[] = {"SystemType", "Name", "Owner", "VolumePath", "IgnoreFlushesDuringBoot", "LayerFolderPath",
                                     "Layers", "Credentials", "ProcessorCount", "ProcessorWeight", "ProcessorMaximum",
                                     "StorageIOPSMaximum", "StorageBandwidthMaximum", "StorageSandboxSize", "MemoryMaximumInMB",
                                     "HostName", "MappedDirectories", "HvPartition", "NetworkSharedContainerName", "EndpointList",
                                     "HvRuntime", "Servicing", "AllowUnqualifiedDNSQuery", "DNSSearchList", "ContainerType",
                                     "TerminateOnLastHandleClosed", "MappedVirtualDisks", NULL};
  static const char *const hv_keys[] = {"ImagePath", "SkipTemplate", "LinuxInitrdFile", "LinuxKernelFile", NULL};
  static const char *const mvd_keys[] = {"HostPath", "ContainerPath", "CreateInUtilityVM", "ReadOnly", "Cache", NULL};
  TRY(only_keys(doc, "ContainerConfig", keys, e));
  TRY(want(doc, "SystemType", J_STR, 1, "ContainerConfig", e));
  if (strcasecmp(jget(doc, "SystemType")->s, "container") != 0) return bad(e, "SystemType must be Container");
  TRY(want(doc, "Name", J_STR, 0, "ContainerConfig", e));
  TRY(want(doc, "Owner", J_STR, 0, "ContainerConfig", e));
  TRY(want(doc, "HvPartition", J_BOOL, 0, "ContainerConfig", e));
  TRY(want(doc, "TerminateOnLastHandleClosed", J_BOOL, 0, "ContainerConfig", e));
  jv *layers = jget(doc, "Layers");
  if (layers && layers->t != J_NULL && layers->t != J_ARR) return bad(e, "Layers must be null or an array");
  jv *ct = jget(doc, "ContainerType");
  if (ct && ct->t == J_STR && strcmp(ct->s, "linux") == 0) {
    jv *hvp = jget(doc, "HvPartition");
    if (!hvp || !hvp->b) return bad(e, "a linux container needs HvPartition true");
    jv *hv = jget(doc, "HvRuntime");
    if (!hv) return bad(e, "a linux container needs HvRuntime");
    TRY(only_keys(hv, "HvRuntime", hv_keys, e));
    TRY(want(hv, "ImagePath", J_STR, 1, "HvRuntime", e));
    TRY(want(hv, "LinuxInitrdFile", J_STR, 0, "HvRuntime", e));
    TRY(want(hv, "LinuxKernelFile", J_STR, 0, "HvRuntime", e));
  } else if (ct) return bad(e, "ContainerType %s is not supported by the shim", ct->t == J_STR ? ct->s : "?");
  jv *mvds = jget(doc, "MappedVirtualDisks");
  if (mvds) {
    if (mvds->t != J_ARR) return bad(e, "MappedVirtualDisks must be an array");
    if (mvds->len > 16) return bad(e, "too many MappedVirtualDisks");
    for (int i = 0; i < mvds->len; i++) {
      TRY(only_keys(mvds->items[i], "MappedVirtualDisk", mvd_keys, e));
      TRY(want(mvds->items[i], "ContainerPath", J_STR, 1, "MappedVirtualDisk", e));
      TRY(want(mvds->items[i], "HostPath", J_STR, 0, "MappedVirtualDisk", e));
      s->mapped[i] = strdup(jget(mvds->items[i], "ContainerPath")->s);
    }
  }
  s->system_type = strdup("Container");
  jv *o = jget(doc, "Owner");
  if (o) { free(s->owner); s->owner = strdup(o->s); }
  jv *t = jget(doc, "TerminateOnLastHandleClosed");
  s->terminate_on_close = t && t->b;
  return S_OK;
}

/* Create document: syntax first (HCS_E_INVALID_JSON), then schema (ERROR_INVALID_DATA). */
static HRESULT validate_create(const char *text, system_t *s, verr *e) {
  static const char *const keys[] = {"Owner", "SchemaVersion", "HostingSystemId", "Container", "VirtualMachine", "HostedSystem",
                                     "ShouldTerminateOnLastHandleClosed", NULL};
  jv *doc = jparse(text);
  if (!doc) { snprintf(e->msg, sizeof e->msg, "The JSON document is invalid."); return C_INVALID_JSON; }
  HRESULT hr = S_OK;
  if (doc->t != J_OBJ) { hr = bad(e, "the configuration must be an object"); goto out; }
  if (!jget(doc, "SchemaVersion")) {
#ifdef SHIM_V1
    hr = validate_v1_config(doc, s, e);
#else
    hr = bad(e, "SchemaVersion is required");
#endif
    goto out;
  }
  if ((hr = only_keys(doc, "ComputeSystem", keys, e)) < 0) goto out;
  jv *sv = jget(doc, "SchemaVersion");
  if (sv->t != J_OBJ || !jis_int(jget(sv, "Major")) || !jis_int(jget(sv, "Minor"))) { hr = bad(e, "SchemaVersion needs integer Major and Minor"); goto out; }
  int major = (int)jget(sv, "Major")->n, minor = (int)jget(sv, "Minor")->n;
  if (major != 2 || minor > g_schema_minor || g_schema_major < 2) { hr = bad(e, "schema version %d.%d is not supported", major, minor); goto out; }
  int n = !!jget(doc, "VirtualMachine") + !!jget(doc, "Container") + !!jget(doc, "HostedSystem");
  if (n != 1) { hr = bad(e, "exactly one of Container, VirtualMachine or HostedSystem is required"); goto out; }
  if ((hr = want(doc, "Owner", J_STR, 0, "ComputeSystem", e)) < 0) goto out;
  if ((hr = want(doc, "ShouldTerminateOnLastHandleClosed", J_BOOL, 0, "ComputeSystem", e)) < 0) goto out;
  jv *vm = jget(doc, "VirtualMachine");
  if (vm) {
    if ((hr = validate_vm(vm, s, e)) < 0) goto out;
    s->system_type = strdup("VirtualMachine");
  } else {
    if ((jget(doc, "Container") && jget(doc, "Container")->t != J_OBJ) || (jget(doc, "HostedSystem") && jget(doc, "HostedSystem")->t != J_OBJ)) { hr = bad(e, "system body must be an object"); goto out; }
    s->system_type = strdup(jget(doc, "Container") ? "Container" : "HostedSystem");
  }
  jv *o = jget(doc, "Owner");
  if (o) { free(s->owner); s->owner = strdup(o->s); }
  jv *t = jget(doc, "ShouldTerminateOnLastHandleClosed");
  s->terminate_on_close = t && t->b;
out:
  jfree(doc);
  return hr;
}

/* Paths the create document asks the worker process to open: it fails without a grant (spec 5). */
static HRESULT check_create_grants(system_t *s, const char *text, verr *e) {
  jv *doc = jparse(text);
  HRESULT hr = S_OK;
  jv *lkd = jget(jget(jget(doc, "VirtualMachine"), "Chipset"), "LinuxKernelDirect");
  const char *paths[2] = {NULL, NULL};
  if (lkd) {
    paths[0] = jget(lkd, "KernelFilePath") ? jget(lkd, "KernelFilePath")->s : NULL;
    paths[1] = jget(lkd, "InitRdPath") ? jget(lkd, "InitRdPath")->s : NULL;
  }
  for (int i = 0; i < 2 && hr >= 0; i++)
    if (paths[i] && !has_grant(s->id, paths[i])) {
      snprintf(e->msg, sizeof e->msg, "The virtual machine could not open '%s': Access is denied.", paths[i]);
      hr = E_ACCESSDENIED;
    }
  for (int c = 0; c < s->nctrl && hr >= 0; c++)
    for (int l = 0; l < MAX_LUN && hr >= 0; l++)
      if (s->att[c][l] && !has_grant(s->id, s->att[c][l])) {
        snprintf(e->msg, sizeof e->msg, "The virtual machine could not open '%s': Access is denied.", s->att[c][l]);
        hr = E_ACCESSDENIED;
      }
  jfree(doc);
  return hr;
}

/* ModifySettingRequest (v2) or ResourceModificationRequestResponse (v1). Called with g_lock held. */
static HRESULT apply_modify(system_t *s, const char *text, verr *e) {
  static const char *const keys[] = {"ResourcePath", "RequestType", "Settings", "GuestRequest", "ResourceType", NULL};
  static const char *const req_types[] = {"Add", "Remove", "Update", "PreAdd", NULL};
  if (s->state != ST_RUNNING && s->state != ST_PAUSED) {
    snprintf(e->msg, sizeof e->msg, "The compute system is not running.");
    return C_MODIFY_STOPPED;
  }
  jv *doc = jparse(text);
  HRESULT hr = S_OK;
  if (!doc) { snprintf(e->msg, sizeof e->msg, "The JSON document is invalid."); return C_INVALID_JSON; }
  if ((hr = only_keys(doc, "ModifySettingRequest", keys, e)) < 0) goto out;
  if ((hr = want(doc, "RequestType", J_STR, 1, "ModifySettingRequest", e)) < 0) goto out;
  const char *rt = jget(doc, "RequestType")->s;
  if (!in_list(rt, req_types)) { hr = bad(e, "RequestType %s is invalid", rt); goto out; }
  int add = strcmp(rt, "Add") == 0, remove = strcmp(rt, "Remove") == 0;
  jv *settings = jget(doc, "Settings");
  jv *restype = jget(doc, "ResourceType");
  if (restype) {
    /* v1 MappedVirtualDisk, forwarded to the GCS which mounts it at ContainerPath. */
    if (restype->t != J_STR || strcmp(restype->s, "MappedVirtualDisk") != 0) { hr = bad(e, "ResourceType is not supported"); goto out; }
    if (!settings) { hr = bad(e, "Settings is required"); goto out; }
    if ((hr = want(settings, "ContainerPath", J_STR, 1, "MappedVirtualDisk", e)) < 0) goto out;
    if ((hr = want(settings, "HostPath", J_STR, add, "MappedVirtualDisk", e)) < 0) goto out;
    const char *cp = jget(settings, "ContainerPath")->s;
    int slot = -1, free_slot = -1;
    for (int i = 0; i < 16; i++) {
      if (s->mapped[i] && strcmp(s->mapped[i], cp) == 0) slot = i;
      if (!s->mapped[i] && free_slot < 0) free_slot = i;
    }
    if (add) {
      if (slot >= 0) { snprintf(e->msg, sizeof e->msg, "%s is already mapped", cp); hr = E_ALREADY_EXISTS; goto out; }
      if (!has_grant(s->id, jget(settings, "HostPath")->s)) { snprintf(e->msg, sizeof e->msg, "Access is denied."); hr = E_ACCESSDENIED; goto out; }
      if (free_slot < 0) { hr = bad(e, "too many mapped disks"); goto out; }
      s->mapped[free_slot] = strdup(cp);
    } else if (remove) {
      if (slot < 0) { snprintf(e->msg, sizeof e->msg, "%s is not mapped", cp); hr = E_NOT_FOUND; goto out; }
      free(s->mapped[slot]);
      s->mapped[slot] = NULL;
    } else { hr = bad(e, "only Add and Remove are supported for MappedVirtualDisk"); }
    goto out;
  }
  if ((hr = want(doc, "ResourcePath", J_STR, 1, "ModifySettingRequest", e)) < 0) goto out;
  const char *path = jget(doc, "ResourcePath")->s;
  static const char scsi_prefix[] = "VirtualMachine/Devices/Scsi/";
  if (strncmp(path, scsi_prefix, sizeof scsi_prefix - 1) == 0) {
    const char *key = path + sizeof scsi_prefix - 1;
    const char *slash = strstr(key, "/Attachments/");
    if (!slash) { hr = bad(e, "invalid SCSI resource path %s", path); goto out; }
    int ctrl = -1, lun;
    for (int i = 0; i < s->nctrl; i++)
      if (strlen(s->ctrl_keys[i]) == (size_t)(slash - key) && strncmp(s->ctrl_keys[i], key, (size_t)(slash - key)) == 0) ctrl = i;
    if (ctrl < 0) {
      snprintf(e->msg, sizeof e->msg, "SCSI controller '%.*s' does not exist in the virtual machine.", (int)(slash - key), key);
      hr = E_NOT_FOUND;
      goto out;
    }
    if (parse_lun(slash + strlen("/Attachments/"), &lun) < 0) { hr = bad(e, "invalid LUN in %s", path); goto out; }
    if (add) {
      if (!settings) { hr = bad(e, "Settings is required to add an attachment"); goto out; }
      if ((hr = validate_attachment(settings, "Settings", e)) < 0) goto out;
      const char *p = jget(settings, "Path")->s;
      if (!has_grant(s->id, p)) {
        snprintf(e->msg, sizeof e->msg, "'%s': Access is denied. The virtual machine has no access to the file.", p);
        hr = E_ACCESSDENIED;
        goto out;
      }
      if (s->att[ctrl][lun]) { snprintf(e->msg, sizeof e->msg, "LUN %d of controller %s is already in use.", lun, s->ctrl_keys[ctrl]); hr = E_ALREADY_EXISTS; goto out; }
      s->att[ctrl][lun] = strdup(p);
    } else if (remove) {
      if (!s->att[ctrl][lun]) { snprintf(e->msg, sizeof e->msg, "No disk is attached at LUN %d.", lun); hr = E_NOT_FOUND; goto out; }
      free(s->att[ctrl][lun]);
      s->att[ctrl][lun] = NULL;
    } else { hr = bad(e, "RequestType %s is not supported for SCSI attachments", rt); }
    goto out;
  }
  if (strcmp(path, "VirtualMachine/ComputeTopology/Memory/SizeInMB") == 0) {
    if (strcmp(rt, "Update") != 0 || !jis_int(settings) || settings->n <= 0) hr = bad(e, "memory update needs RequestType Update and a positive integer");
    goto out;
  }
  hr = bad(e, "resource path %s is not supported", path);
out:
  jfree(doc);
  return hr;
}

/* Options/query strings: NULL and L"" are both accepted (spec 1.1); anything else must be a JSON object. */
static HRESULT check_optional_json(const char *text, verr *e) {
  if (!text || !text[0]) return S_OK;
  jv *doc = jparse(text);
  if (!doc) { snprintf(e->msg, sizeof e->msg, "The JSON document is invalid."); return C_INVALID_JSON; }
  HRESULT hr = doc->t == J_OBJ ? S_OK : bad(e, "expected a JSON object");
  jfree(doc);
  return hr;
}

static HRESULT check_property_query(const char *text, verr *e) {
  static const char *const types[] = {"Memory", "GuestMemory", "Statistics", "ProcessList", "TerminateOnLastHandleClosed",
                                      "SharedMemoryRegion", "GuestConnection", "ICHeartbeatStatus", "ProcessorTopology",
                                      "CpuGroup", "SystemGUID", "Basic", NULL};
  TRY(check_optional_json(text, e));
  if (!text || !text[0]) return S_OK;
  jv *doc = jparse(text);
  jv *pt = jget(doc, "PropertyTypes");
  HRESULT hr = S_OK;
  if (pt) {
    if (pt->t != J_ARR) hr = bad(e, "PropertyTypes must be an array");
    for (int i = 0; hr >= 0 && i < pt->len; i++)
      if (pt->items[i]->t != J_STR || !in_list(pt->items[i]->s, types)) hr = bad(e, "unknown property type");
  }
  jfree(doc);
  return hr;
}

static void system_properties(sb *b, system_t *s) {
  sb_add(b, "{\"Id\":", 6);
  sb_jstr(b, s->id);
  sb_add(b, ",\"Name\":", 8);
  sb_jstr(b, s->id);
  sb_add(b, ",\"SystemType\":", 14);
  sb_jstr(b, s->system_type ? s->system_type : "VirtualMachine");
  sb_add(b, ",\"Owner\":", 9);
  sb_jstr(b, s->owner ? s->owner : "");
  sb_printf(b, ",\"RuntimeOsType\":\"Linux\",\"RuntimeId\":\"%s\",\"State\":\"%s\",\"Stopped\":%s", s->runtime_id,
            state_name(s->state), s->state == ST_STOPPED ? "true" : "false");
  if (s->state == ST_STOPPED) sb_printf(b, ",\"ExitType\":\"%s\"", s->exit_type);
  sb_printf(b, ",\"TerminateOnLastHandleClosed\":%s}", s->terminate_on_close ? "true" : "false");
}

static int matches_filter(const jv *arr, const char *value) {
  if (!arr) return 1;
  if (arr->t != J_ARR) return 0;
  for (int i = 0; i < arr->len; i++)
    if (arr->items[i]->t == J_STR && strcmp(arr->items[i]->s, value) == 0) return 1;
  return 0;
}

static HRESULT enumerate_json(const char *query, char **out, verr *e) {
  TRY(check_optional_json(query, e));
  jv *q = (query && query[0]) ? jparse(query) : NULL;
  sb b = {0};
  sb_add(&b, "[", 1);
  int first = 1;
  for (system_t *s = g_systems; s; s = s->next) {
    if (!s->listed || s->state == ST_CREATING) continue;
    if (!matches_filter(jget(q, "Ids"), s->id) || !matches_filter(jget(q, "Names"), s->id) ||
        !matches_filter(jget(q, "Types"), s->system_type ? s->system_type : "") || !matches_filter(jget(q, "Owners"), s->owner ? s->owner : ""))
      continue;
    if (!first) sb_add(&b, ",", 1);
    first = 0;
    system_properties(&b, s);
  }
  sb_add(&b, "]", 1);
  jfree(q);
  *out = b.p;
  return S_OK;
}

static char *service_properties_json(void) {
  sb b = {0};
  sb_add(&b, "{\"Properties\":[{\"SupportedSchemaVersions\":[", 43);
  int first = 1;
  for (int major = 1; major <= g_schema_major; major++) {
    int max_minor = major == g_schema_major ? g_schema_minor : (major == 1 ? 0 : 5);
    for (int minor = 0; minor <= max_minor; minor++) {
      sb_printf(&b, "%s{\"Major\":%d,\"Minor\":%d}", first ? "" : ",", major, minor);
      first = 0;
    }
  }
  sb_add(&b, "]}]}", 4);
  return b.p;
}

static HRESULT service_query(const char *query, char **out, verr *e) {
  TRY(check_optional_json(query, e));
  if (query && query[0]) {
    jv *q = jparse(query);
    jv *pt = jget(q, "PropertyTypes");
    HRESULT hr = S_OK;
    if (pt && pt->t != J_ARR) hr = bad(e, "PropertyTypes must be an array");
    for (int i = 0; hr >= 0 && pt && i < pt->len; i++)
      if (pt->items[i]->t != J_STR || strcmp(pt->items[i]->s, "Basic") != 0) hr = bad(e, "the shim knows only the Basic service property");
    jfree(q);
    if (hr < 0) return hr;
  }
  *out = service_properties_json();
  return S_OK;
}

static HRESULT process_params(const char *text, int *exit_now, uint32_t *code, int pipes[3], verr *e) {
  static const char *const keys[] = {"ApplicationName", "CommandLine", "CommandArgs", "User", "WorkingDirectory", "Environment",
                                     "RestrictedToken", "EmulateConsole", "CreateStdInPipe", "CreateStdOutPipe", "CreateStdErrPipe",
                                     "ConsoleSize", "UseExistingLogin", "UseLegacyConsole", NULL};
  jv *doc = jparse(text);
  if (!doc) { snprintf(e->msg, sizeof e->msg, "The JSON document is invalid."); return C_INVALID_JSON; }
  HRESULT hr = only_keys(doc, "ProcessParameters", keys, e);
  jv *cl = jget(doc, "CommandLine");
  if (hr >= 0 && !cl && !jget(doc, "CommandArgs") && !jget(doc, "ApplicationName")) hr = bad(e, "a command line is required");
  if (hr >= 0 && cl && cl->t != J_STR) hr = bad(e, "CommandLine must be a string");
  if (hr >= 0 && jget(doc, "Environment") && jget(doc, "Environment")->t != J_OBJ) hr = bad(e, "Environment must be an object");
  static const char *const pipe_keys[] = {"CreateStdInPipe", "CreateStdOutPipe", "CreateStdErrPipe"};
  for (int i = 0; i < 3; i++) {
    jv *p = jget(doc, pipe_keys[i]);
    pipes[i] = p && p->t == J_BOOL && p->b;
  }
  /* "exit <n>" makes the simulated process exit by itself with code n; anything else runs until stopped. */
  *exit_now = 0;
  if (hr >= 0 && cl && strncmp(cl->s, "exit ", 5) == 0) {
    *exit_now = 1;
    *code = (uint32_t)strtoul(cl->s + 5, NULL, 10);
  }
  jfree(doc);
  return hr;
}

static const char *signal_names[] = {"CtrlC", "CtrlBreak", "CtrlClose", "CtrlLogOff", "CtrlShutdown", NULL};

static HRESULT signal_options(const char *text, verr *e) {
  static const char *const keys[] = {"Signal", NULL};
  jv *doc = jparse(text);
  if (!doc) { snprintf(e->msg, sizeof e->msg, "The JSON document is invalid."); return C_INVALID_JSON; }
  HRESULT hr = only_keys(doc, "SignalProcessOptions", keys, e);
  if (hr >= 0) hr = want(doc, "Signal", J_STR, 1, "SignalProcessOptions", e);
  if (hr >= 0 && !in_list(jget(doc, "Signal")->s, signal_names)) hr = bad(e, "unknown signal");
  jfree(doc);
  return hr;
}

static void process_status(sb *b, process *p) {
  sb_printf(b, "{\"ProcessId\":%u,\"Exited\":%s,\"ExitCode\":%u,\"LastWaitResult\":0}", p->pid, p->exited ? "true" : "false", p->exit_code);
}

/* ------------------------------------------------------------------------ */
/* Asynchronous work and v1 notifications                                    */

enum { W_CREATE, W_START, W_SHUTDOWN, W_TERMINATE, W_PAUSE, W_RESUME, W_MODIFY, W_PROPS, W_ENUM, W_PCREATE, W_PTERM, W_PSIGNAL, W_PPROPS, W_FLUSH };

typedef struct work {
  int kind;
  system_t *sys;
  handle *op;     /* v2 */
  handle *target; /* v1: handle whose callback gets the completion */
  process *proc;
  char *text; /* document given to the call */
  HRESULT forced_hr;
  int forced;
  int pipes[3];
  uint32_t delay;
} work;

typedef struct delivery {
  handle *cb;
  notif n;
} delivery;

/* Collects (under g_lock) the callbacks a notification must reach, or queues it on
 * handles that never registered one (HCS holds the create completion until then). */
static int collect_notification(system_t *s, handle *only, DWORD type, HRESULT status, const char *data, delivery *out, int max) {
  int n = 0;
  for (handle *h = g_handles; h; h = h->next) {
    if (h->kind != H_SYS || (only && h != only) || (!only && h->sys != s)) continue;
    if (h->cb && !h->cb->dead) {
      if (n < max) {
        out[n].cb = h->cb;
        out[n].n.type = type;
        out[n].n.status = status;
        out[n].n.data = data ? strdup(data) : NULL;
        h->cb->delivering++;
        n++;
      }
    }
#ifdef SHIM_V1
    else if (!h->ever_registered && h->nqueue < 16) {
      h->queue[h->nqueue].type = type;
      h->queue[h->nqueue].status = status;
      h->queue[h->nqueue].data = data ? strdup(data) : NULL;
      h->nqueue++;
    }
#endif
  }
  return n;
}

/* Calls the callbacks outside g_lock: the caller (koffi) marshals the call to the JS
 * thread and blocks this thread until it ran, so holding the lock would deadlock. */
static void deliver(delivery *d, int n) {
  for (int i = 0; i < n; i++) {
    char16_t *data = d[i].n.data ? u8to16(d[i].n.data, 0) : NULL;
    d[i].cb->fn(d[i].n.type, d[i].cb->ctx, d[i].n.status, data);
    free(data);
    free(d[i].n.data);
    pthread_mutex_lock(&g_lock);
    d[i].cb->delivering--;
    pthread_cond_broadcast(&g_cond);
    pthread_mutex_unlock(&g_lock);
  }
}

static void finish_op(handle *op, HRESULT hr, char *doc) {
  op->op_state = OP_DONE;
  op->op_hr = hr;
  free(op->op_doc);
  op->op_doc = doc;
  op->op_busy = 0;
  pthread_cond_broadcast(&g_cond);
  if (op->closed) { free(op->op_doc); free(op); } /* closed while running: "fire and forget" */
}

static HANDLE new_pipe(void) { return new_handle(H_PIPE); }

static void *work_thread(void *arg) {
  work *w = arg;
  sleep_ms(w->delay);
  delivery d[32];
  int nd = 0;
  pthread_mutex_lock(&g_lock);
  system_t *s = w->sys;
  verr e = {{0}};
  HRESULT hr = S_OK;
  char *result = NULL;
  DWORD ntype = 0;
  const char *fn = "work";
  if (w->forced) {
    hr = w->forced_hr;
    snprintf(e.msg, sizeof e.msg, "injected failure");
  }
  switch (w->kind) {
    case W_CREATE:
      fn = "HcsCreateComputeSystem";
      ntype = N_CREATE;
      if (hr >= 0) hr = check_create_grants(s, w->text, &e);
      if (hr >= 0) s->state = ST_CREATED;
      else { s->listed = 0; s->state = ST_STOPPED; } /* a failed create leaves nothing behind but the handle */
      break;
    case W_START:
      fn = "HcsStartComputeSystem";
      ntype = N_START;
      if (hr >= 0 && s->state != ST_CREATED) { hr = C_INVALID_STATE; snprintf(e.msg, sizeof e.msg, "The compute system is in state %s.", state_name(s->state)); }
      if (hr >= 0) s->state = ST_RUNNING;
      break;
    case W_PAUSE:
      fn = "HcsPauseComputeSystem";
      ntype = N_PAUSE;
      if (hr >= 0 && s->state != ST_RUNNING) { hr = C_INVALID_STATE; snprintf(e.msg, sizeof e.msg, "Only a running system can be paused."); }
      if (hr >= 0) s->state = ST_PAUSED;
      break;
    case W_RESUME:
      fn = "HcsResumeComputeSystem";
      ntype = N_RESUME;
      if (hr >= 0 && s->state != ST_PAUSED) { hr = C_INVALID_STATE; snprintf(e.msg, sizeof e.msg, "Only a paused system can be resumed."); }
      if (hr >= 0) s->state = ST_RUNNING;
      break;
    case W_SHUTDOWN:
    case W_TERMINATE:
      fn = w->kind == W_SHUTDOWN ? "HcsShutDownComputeSystem" : "HcsTerminateComputeSystem";
      if (hr >= 0 && s->state == ST_STOPPED) { hr = C_ALREADY_STOPPED; snprintf(e.msg, sizeof e.msg, "The compute system has already stopped."); }
      if (hr >= 0) {
        const char *exit_type = w->kind == W_SHUTDOWN ? "GracefulExit" : "ForcedExit";
        char data[96];
        stop_system(s, exit_type, S_OK);
        snprintf(data, sizeof data, "{\"Status\":0,\"ExitType\":\"%s\"}", exit_type);
        nd = collect_notification(s, NULL, N_EXITED, S_OK, data, d, 32);
      }
      break;
    case W_MODIFY:
      fn = "HcsModifyComputeSystem";
      if (hr >= 0) hr = apply_modify(s, w->text, &e);
      break;
    case W_PROPS:
      fn = "HcsGetComputeSystemProperties";
      if (hr >= 0) { sb b = {0}; system_properties(&b, s); result = b.p; }
      break;
    case W_ENUM:
      fn = "HcsEnumerateComputeSystems";
      if (hr >= 0) hr = enumerate_json(w->text, &result, &e);
      break;
    case W_PCREATE: {
      fn = "HcsCreateProcess";
      process *p = w->proc;
      if (hr >= 0 && s->state != ST_RUNNING) { hr = C_INVALID_STATE; snprintf(e.msg, sizeof e.msg, "The compute system is not running."); }
      if (hr >= 0) {
        w->op->op_info.ProcessId = p->pid;
        w->op->op_info.StdInput = w->pipes[0] ? new_pipe() : NULL;
        w->op->op_info.StdOutput = w->pipes[1] ? new_pipe() : NULL;
        w->op->op_info.StdError = w->pipes[2] ? new_pipe() : NULL;
      } else {
        p->exited = 1;
      }
      break;
    }
    case W_PTERM:
    case W_PSIGNAL:
      fn = w->kind == W_PTERM ? "HcsTerminateProcess" : "HcsSignalProcess";
      if (hr >= 0 && w->proc->exited) { hr = HCS_E_PROCESS_ALREADY_STOPPED; snprintf(e.msg, sizeof e.msg, "The process has already exited."); }
      if (hr >= 0) { w->proc->exited = 1; w->proc->exit_code = w->kind == W_PTERM ? 137 : 130; pthread_cond_broadcast(&g_cond); }
      break;
    case W_PPROPS:
      fn = "HcsGetProcessProperties";
      if (hr >= 0) { sb b = {0}; process_status(&b, w->proc); result = b.p; }
      break;
    case W_FLUSH: {
      /* the handle may have been closed or its callback unregistered meanwhile */
      handle *h = find_handle(w->target, H_SYS);
      if (!h || !h->cb) break;
      for (int i = 0; i < h->nqueue && nd < 32; i++) {
        d[nd].cb = h->cb;
        d[nd].n = h->queue[i];
        h->cb->delivering++;
        nd++;
      }
      h->nqueue = 0;
      break;
    }
  }
  char *err = hr < 0 ? error_doc(hr, fn, e.msg[0] ? e.msg : "The operation failed.") : NULL;
  if (w->op) finish_op(w->op, hr, hr < 0 ? err : result);
  else {
    /* v1: the completion is a notification whose status is the final HRESULT. */
    if (ntype && w->target) nd += collect_notification(s, w->target, ntype, hr, err, d + nd, 32 - nd);
    if (hr < 0 && w->kind == W_CREATE) { /* nothing more */ }
    free(err);
    free(result);
  }
  if (hr < 0 && w->op) free(result);
  if (s) { s->pins--; maybe_free_system(s); }
  pthread_mutex_unlock(&g_lock);
  deliver(d, nd);
  free(w->text);
  free(w);
  pthread_mutex_lock(&g_lock);
  g_pending--;
  pthread_cond_broadcast(&g_cond);
  pthread_mutex_unlock(&g_lock);
  return NULL;
}

/* Called with g_lock held. Takes ownership of `text`. */
static work *spawn_work(int kind, system_t *s, handle *op, handle *target, process *p, char *text, const char *fault_name) {
  work *w = calloc(1, sizeof *w);
  w->kind = kind;
  w->sys = s;
  w->op = op;
  w->target = target;
  w->proc = p;
  w->text = text;
  w->delay = g_delay_ms;
  HRESULT hr;
  int async = 0;
  if (fault_name && take_fault(fault_name, &hr, &async)) {
    /* sync faults were taken by the caller already; an async one fails the completion */
    w->forced = 1;
    w->forced_hr = hr;
  }
  if (s) s->pins++;
  if (op) { op->op_state = OP_RUNNING; op->op_busy = 1; }
  g_pending++;
  pthread_t t;
  pthread_create(&t, NULL, work_thread, w);
  pthread_detach(t);
  return w; /* safe to fill in until g_lock is released: the thread takes it first */
}

/* Sync fault: only faults armed with async=0. Async ones stay armed for spawn_work. */
static int take_sync_fault(const char *name, HRESULT *hr) {
  int hit = 0;
  pthread_mutex_lock(&g_alloc_lock);
  for (int i = 0; i < 16; i++)
    if (g_faults[i].used && !g_faults[i].async && strcmp(g_faults[i].name, name) == 0) {
      *hr = g_faults[i].hr;
      g_faults[i].used = 0;
      hit = 1;
      break;
    }
  pthread_mutex_unlock(&g_alloc_lock);
  return hit;
}

static uint32_t next_guid(char out[37]) {
  uint32_t n = g_guid_counter++;
  snprintf(out, 37, "%08x-5d1c-4b2e-9a00-%012x", 0x5a000000u + n, n * 7919u);
  return n;
}

static system_t *new_system(const char *id) {
  system_t *s = calloc(1, sizeof *s);
  s->id = strdup(id);
  s->owner = strdup("");
  s->state = ST_CREATING;
  s->listed = 1;
  s->next_pid = 100;
  next_guid(s->runtime_id);
  s->next = g_systems;
  g_systems = s;
  return s;
}

/* Drops one handle reference; the last one may terminate the system (ShouldTerminateOnLastHandleClosed). */
static void release_system(system_t *s) {
  s->refs--;
  if (s->refs == 0 && s->listed) {
    if (s->state == ST_STOPPED || s->state == ST_CREATING) s->listed = 0;
    else if (s->terminate_on_close) { stop_system(s, "ForcedExit", S_OK); s->listed = 0; }
  }
  maybe_free_system(s);
}

static void close_system_handle(handle *h) {
  if (h->cb) { h->cb->owner = NULL; h->cb = NULL; }
  for (int i = 0; i < h->nqueue; i++) free(h->queue[i].data);
  system_t *s = h->sys;
  unlink_handle(h);
  free(h);
  release_system(s);
}

/* ------------------------------------------------------------------------ */
/* Test-only exports                                                         */

EXPORT int32_t ShimLiveHandles(void) { pthread_mutex_lock(&g_lock); int n = g_live_handles; pthread_mutex_unlock(&g_lock); return n; }
EXPORT int32_t ShimLiveAllocations(void) { pthread_mutex_lock(&g_alloc_lock); int n = g_live_allocs; pthread_mutex_unlock(&g_alloc_lock); return n; }
EXPORT int32_t ShimBadFrees(void) { pthread_mutex_lock(&g_alloc_lock); int n = g_bad_frees; pthread_mutex_unlock(&g_alloc_lock); return n; }
EXPORT int32_t ShimPendingWork(void) { pthread_mutex_lock(&g_lock); int n = g_pending; pthread_mutex_unlock(&g_lock); return n; }
EXPORT void ShimSetDelay(uint32_t ms) { pthread_mutex_lock(&g_lock); g_delay_ms = ms; pthread_mutex_unlock(&g_lock); }
EXPORT void ShimSetSchemaVersion(int32_t major, int32_t minor) { pthread_mutex_lock(&g_lock); g_schema_major = major; g_schema_minor = minor; pthread_mutex_unlock(&g_lock); }
EXPORT const char *ShimLastDocument(void) { return g_last_doc; }

EXPORT int32_t ShimCallCount(const char *name) {
  int n = 0;
  pthread_mutex_lock(&g_alloc_lock);
  for (int i = 0; i < g_ncalls; i++)
    if (strcmp(g_calls[i].name, name) == 0) n = g_calls[i].count;
  pthread_mutex_unlock(&g_alloc_lock);
  return n;
}

/* Arms a failure for the next call of `name`: async=0 fails the call itself, async=1 its completion. */
EXPORT void ShimFailNext(const char *name, int32_t hr, int32_t async) {
  pthread_mutex_lock(&g_alloc_lock);
  for (int i = 0; i < 16; i++)
    if (!g_faults[i].used) {
      snprintf(g_faults[i].name, sizeof g_faults[i].name, "%s", name);
      g_faults[i].hr = hr;
      g_faults[i].async = async;
      g_faults[i].used = 1;
      break;
    }
  pthread_mutex_unlock(&g_alloc_lock);
}

EXPORT int32_t ShimAttachmentCount(const char *id) {
  int n = -1;
  pthread_mutex_lock(&g_lock);
  system_t *s = find_system(id);
  if (s) {
    n = 0;
    for (int c = 0; c < s->nctrl; c++)
      for (int l = 0; l < MAX_LUN; l++) n += !!s->att[c][l];
    for (int i = 0; i < 16; i++) n += !!s->mapped[i];
  }
  pthread_mutex_unlock(&g_lock);
  return n;
}

static void *exit_thread(void *arg) {
  char **a = arg;
  delivery d[32];
  pthread_mutex_lock(&g_lock);
  system_t *s = find_system(a[0]);
  int nd = 0;
  if (s) {
    HRESULT status = (HRESULT)strtol(a[1], NULL, 10);
    stop_system(s, a[2], status);
    char data[128];
    snprintf(data, sizeof data, "{\"Status\":%d,\"ExitType\":\"%s\"}", status, a[2]);
    nd = collect_notification(s, NULL, N_EXITED, status, data, d, 32);
  }
  pthread_mutex_unlock(&g_lock);
  deliver(d, nd);
  free(a[0]); free(a[1]); free(a[2]); free(a);
  pthread_mutex_lock(&g_lock);
  g_pending--;
  pthread_cond_broadcast(&g_cond);
  pthread_mutex_unlock(&g_lock);
  return NULL;
}

/* Simulates the guest or worker process dying, from a shim thread as HCS would: state
 * Stopped, exit notifications (v1), exit waiters woken (v2). -1 if the id is unknown. */
EXPORT int32_t ShimExitSystem(const char *id, int32_t status, const char *exit_type) {
  pthread_mutex_lock(&g_lock);
  if (!find_system(id)) { pthread_mutex_unlock(&g_lock); return -1; }
  g_pending++;
  pthread_mutex_unlock(&g_lock);
  char **a = malloc(3 * sizeof(char *));
  char buf[16];
  snprintf(buf, sizeof buf, "%d", status);
  a[0] = strdup(id); a[1] = strdup(buf); a[2] = strdup(exit_type);
  pthread_t t;
  pthread_create(&t, NULL, exit_thread, a);
  pthread_detach(t);
  return 0;
}

static void *disconnect_thread(void *arg) {
  (void)arg;
  delivery d[32];
  sleep_ms(g_delay_ms);
  pthread_mutex_lock(&g_lock);
  int nd = 0;
  for (handle *h = g_handles; h && nd < 32; h = h->next)
    if (h->kind == H_SYS && h->cb && !h->cb->dead) {
      d[nd].cb = h->cb;
      d[nd].n.type = N_SERVICE_DISCONNECT;
      d[nd].n.status = S_OK;
      d[nd].n.data = NULL;
      h->cb->delivering++;
      nd++;
    }
  pthread_mutex_unlock(&g_lock);
  deliver(d, nd);
  pthread_mutex_lock(&g_lock);
  g_pending--;
  pthread_cond_broadcast(&g_cond);
  pthread_mutex_unlock(&g_lock);
  return NULL;
}

/* v1: the vmcompute service went away (notification 0x01000000 to every callback). */
EXPORT void ShimServiceDisconnect(void) {
  pthread_mutex_lock(&g_lock);
  g_pending++;
  pthread_mutex_unlock(&g_lock);
  pthread_t t;
  pthread_create(&t, NULL, disconnect_thread, NULL);
  pthread_detach(t);
}

/* Forgets every system and grant. Refuses (returns the number of running shim threads)
 * while work is in flight; the caller polls ShimPendingWork first. Counters are not reset:
 * tests assert they are back at zero instead. */
EXPORT int32_t ShimReset(void) {
  pthread_mutex_lock(&g_lock);
  if (g_pending) { int n = g_pending; pthread_mutex_unlock(&g_lock); return n; }
  for (system_t *s = g_systems; s; s = s->next) s->listed = 0;
  system_t *s = g_systems;
  while (s) { system_t *n = s->next; if (s->refs == 0 && s->pins == 0) free_system(s); s = n; }
  while (g_grants) { grant *g = g_grants; g_grants = g->next; free(g->id); free(g->path); free(g); }
  g_delay_ms = 5;
  g_schema_major = 2;
  g_schema_minor = 5;
  pthread_mutex_unlock(&g_lock);
  pthread_mutex_lock(&g_alloc_lock);
  memset(g_faults, 0, sizeof g_faults);
  pthread_mutex_unlock(&g_alloc_lock);
  return 0;
}

/* Closes every handle the caller leaked, so one failing test does not cascade. Returns how many. */
EXPORT int32_t ShimForceCloseAll(void) {
  pthread_mutex_lock(&g_lock);
  int n = 0;
  while (g_handles) {
    handle *h = g_handles;
    n++;
    if (h->kind == H_SYS) close_system_handle(h);
    else if (h->kind == H_OP && h->op_busy) { unlink_handle(h); }
    else {
      if (h->kind == H_CB && h->owner) h->owner->cb = NULL;
      if (h->kind == H_PROC && h->sys) release_system(h->sys);
      if (h->kind == H_OP) free(h->op_doc);
      unlink_handle(h);
      free(h);
    }
  }
  pthread_mutex_unlock(&g_lock);
  pthread_mutex_lock(&g_alloc_lock);
  while (g_allocs) { alloc_node *a = g_allocs; g_allocs = a->next; free(a->p); free(a); }
  g_live_allocs = 0;
  g_bad_frees = 0;
  pthread_mutex_unlock(&g_alloc_lock);
  return n;
}

/* Pipe handles handed out for process stdio (kernel32!CloseHandle on Windows). */
EXPORT int32_t CloseHandle(HANDLE h) {
  count_call("CloseHandle");
  pthread_mutex_lock(&g_lock);
  handle *p = find_handle(h, H_PIPE);
  if (p) { unlink_handle(p); free(p); }
  pthread_mutex_unlock(&g_lock);
  return p ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Grants (both APIs)                                                        */

__attribute__((unused)) static HRESULT do_grant(const char16_t *vmid, const char16_t *path) {
  char *id = u16to8(vmid), *p = u16to8(path);
  HRESULT hr = S_OK;
  if (!id || !p || !id[0] || !p[0]) hr = E_INVALIDARG;
  pthread_mutex_lock(&g_lock);
  if (hr >= 0 && !has_grant(id, p)) {
    grant *g = calloc(1, sizeof *g);
    g->id = id; g->path = p;
    g->next = g_grants;
    g_grants = g;
    id = p = NULL;
  }
  pthread_mutex_unlock(&g_lock);
  free(id); free(p);
  return hr;
}

#ifdef SHIM_V1
/* ======================================================================== */
/* vmcompute.dll                                                             */

#define SYNC_FAULT(name, result)                                           \
  do {                                                                     \
    HRESULT _f;                                                            \
    if (take_sync_fault(name, &_f)) {                                      \
      char *_d = error_doc(_f, name, "injected failure");                  \
      put_out(result, _d);                                                 \
      free(_d);                                                            \
      return _f;                                                           \
    }                                                                      \
  } while (0)

static HRESULT fail_with(char16_t **result, HRESULT hr, const char *fn, verr *e) {
  char *d = error_doc(hr, fn, e->msg[0] ? e->msg : "The operation failed.");
  put_out(result, d);
  free(d);
  return hr;
}

EXPORT HRESULT GrantVmAccess(const char16_t *vmid, const char16_t *path) {
  count_call(__func__);
  HRESULT f;
  if (take_sync_fault(__func__, &f)) return f;
  return do_grant(vmid, path);
}

EXPORT HRESULT HcsEnumerateComputeSystems(const char16_t *query, char16_t **systems, char16_t **result) {
  count_call(__func__);
  if (systems) *systems = NULL;
  if (result) *result = NULL;
  SYNC_FAULT(__func__, result);
  char *q = u16to8(query), *out = NULL;
  verr e = {{0}};
  pthread_mutex_lock(&g_lock);
  HRESULT hr = enumerate_json(q, &out, &e);
  pthread_mutex_unlock(&g_lock);
  free(q);
  if (hr < 0) return fail_with(result, hr, __func__, &e);
  put_out(systems, out);
  free(out);
  return S_OK;
}

EXPORT HRESULT HcsCreateComputeSystem(const char16_t *id16, const char16_t *config16, HANDLE identity, HANDLE *out, char16_t **result) {
  count_call(__func__);
  (void)identity;
  *out = NULL;
  if (result) *result = NULL;
  SYNC_FAULT(__func__, result);
  char *id = u16to8(id16), *cfg = u16to8(config16);
  remember_doc(cfg);
  verr e = {{0}};
  HRESULT hr;
  if (!id || !id[0] || !cfg) { free(id); free(cfg); snprintf(e.msg, sizeof e.msg, "id and configuration are required"); return fail_with(result, E_INVALIDARG, __func__, &e); }
  pthread_mutex_lock(&g_lock);
  if (find_system(id)) {
    pthread_mutex_unlock(&g_lock);
    snprintf(e.msg, sizeof e.msg, "A compute system with id %s already exists.", id);
    free(id); free(cfg);
    return fail_with(result, HCS_E_SYSTEM_ALREADY_EXISTS, __func__, &e);
  }
  system_t *s = new_system(id);
  hr = validate_create(cfg, s, &e);
  if (hr < 0) {
    s->listed = 0;
    maybe_free_system(s);
    pthread_mutex_unlock(&g_lock);
    free(id); free(cfg);
    return fail_with(result, hr, __func__, &e);
  }
  handle *h = new_handle(H_SYS);
  h->sys = s;
  s->refs++;
  spawn_work(W_CREATE, s, NULL, h, NULL, cfg, __func__);
  pthread_mutex_unlock(&g_lock);
  free(id);
  *out = h;
  return V1_PENDING;
}

EXPORT HRESULT HcsOpenComputeSystem(const char16_t *id16, HANDLE *out, char16_t **result) {
  count_call(__func__);
  *out = NULL;
  if (result) *result = NULL;
  SYNC_FAULT(__func__, result);
  char *id = u16to8(id16);
  verr e = {{0}};
  pthread_mutex_lock(&g_lock);
  system_t *s = id ? find_system(id) : NULL;
  if (!s || s->state == ST_CREATING) {
    pthread_mutex_unlock(&g_lock);
    snprintf(e.msg, sizeof e.msg, "A compute system with id %s was not found.", id ? id : "(null)");
    free(id);
    return fail_with(result, V1_NOT_FOUND, __func__, &e);
  }
  handle *h = new_handle(H_SYS);
  h->sys = s;
  s->refs++;
  pthread_mutex_unlock(&g_lock);
  free(id);
  *out = h;
  return S_OK;
}

EXPORT HRESULT HcsCloseComputeSystem(HANDLE sys) {
  count_call(__func__);
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(sys, H_SYS);
  if (!h) { pthread_mutex_unlock(&g_lock); return E_HANDLE; }
  close_system_handle(h);
  pthread_mutex_unlock(&g_lock);
  return S_OK;
}

/* Start/Pause/Resume/Shutdown/Terminate: pending + completion notification (spec 3.2). */
static HRESULT v1_async(const char *fn, HANDLE sys, const char16_t *options, char16_t **result, int kind, int want_state, HRESULT wrong_state_hr) {
  if (result) *result = NULL;
  SYNC_FAULT(fn, result);
  char *opt = u16to8(options);
  verr e = {{0}};
  HRESULT hr = check_optional_json(opt, &e);
  free(opt);
  if (hr < 0) return fail_with(result, hr, fn, &e);
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(sys, H_SYS);
  if (!h) { pthread_mutex_unlock(&g_lock); snprintf(e.msg, sizeof e.msg, "The handle is invalid."); return fail_with(result, E_HANDLE, fn, &e); }
  system_t *s = h->sys;
  int stop = kind == W_SHUTDOWN || kind == W_TERMINATE;
  if (stop ? s->state == ST_STOPPED : s->state != want_state) {
    pthread_mutex_unlock(&g_lock);
    snprintf(e.msg, sizeof e.msg, "The compute system is in state %s.", state_name(s->state));
    return fail_with(result, wrong_state_hr, fn, &e);
  }
  spawn_work(kind, s, NULL, h, NULL, NULL, fn);
  pthread_mutex_unlock(&g_lock);
  return V1_PENDING;
}

EXPORT HRESULT HcsStartComputeSystem(HANDLE sys, const char16_t *options, char16_t **result) {
  count_call(__func__);
  return v1_async(__func__, sys, options, result, W_START, ST_CREATED, V1_INVALID_STATE);
}
EXPORT HRESULT HcsShutdownComputeSystem(HANDLE sys, const char16_t *options, char16_t **result) {
  count_call(__func__);
  return v1_async(__func__, sys, options, result, W_SHUTDOWN, 0, V1_ALREADY_STOPPED);
}
EXPORT HRESULT HcsTerminateComputeSystem(HANDLE sys, const char16_t *options, char16_t **result) {
  count_call(__func__);
  return v1_async(__func__, sys, options, result, W_TERMINATE, 0, V1_ALREADY_STOPPED);
}
EXPORT HRESULT HcsPauseComputeSystem(HANDLE sys, const char16_t *options, char16_t **result) {
  count_call(__func__);
  return v1_async(__func__, sys, options, result, W_PAUSE, ST_RUNNING, V1_INVALID_STATE);
}
EXPORT HRESULT HcsResumeComputeSystem(HANDLE sys, const char16_t *options, char16_t **result) {
  count_call(__func__);
  return v1_async(__func__, sys, options, result, W_RESUME, ST_PAUSED, V1_INVALID_STATE);
}

EXPORT HRESULT HcsGetComputeSystemProperties(HANDLE sys, const char16_t *query16, char16_t **props, char16_t **result) {
  count_call(__func__);
  *props = NULL;
  if (result) *result = NULL;
  SYNC_FAULT(__func__, result);
  char *q = u16to8(query16);
  verr e = {{0}};
  HRESULT hr = check_property_query(q, &e);
  free(q);
  if (hr < 0) return fail_with(result, hr, __func__, &e);
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(sys, H_SYS);
  if (!h) { pthread_mutex_unlock(&g_lock); snprintf(e.msg, sizeof e.msg, "The handle is invalid."); return fail_with(result, E_HANDLE, __func__, &e); }
  sb b = {0};
  system_properties(&b, h->sys);
  pthread_mutex_unlock(&g_lock);
  put_out(props, b.p);
  free(b.p);
  return S_OK;
}

EXPORT HRESULT HcsModifyComputeSystem(HANDLE sys, const char16_t *config16, char16_t **result) {
  count_call(__func__);
  if (result) *result = NULL;
  SYNC_FAULT(__func__, result);
  char *cfg = u16to8(config16);
  remember_doc(cfg);
  verr e = {{0}};
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(sys, H_SYS);
  HRESULT hr = h ? apply_modify(h->sys, cfg ? cfg : "", &e) : E_HANDLE;
  pthread_mutex_unlock(&g_lock);
  free(cfg);
  if (hr < 0) return fail_with(result, hr, __func__, &e);
  return S_OK;
}

EXPORT HRESULT HcsGetServiceProperties(const char16_t *query16, char16_t **props, char16_t **result) {
  count_call(__func__);
  *props = NULL;
  if (result) *result = NULL;
  SYNC_FAULT(__func__, result);
  char *q = u16to8(query16), *out = NULL;
  verr e = {{0}};
  pthread_mutex_lock(&g_lock);
  HRESULT hr = service_query(q, &out, &e);
  pthread_mutex_unlock(&g_lock);
  free(q);
  if (hr < 0) return fail_with(result, hr, __func__, &e);
  put_out(props, out);
  free(out);
  return S_OK;
}

EXPORT HRESULT HcsRegisterComputeSystemCallback(HANDLE sys, notif_cb cb, void *ctx, HANDLE *out) {
  count_call(__func__);
  *out = NULL;
  HRESULT f;
  if (take_sync_fault(__func__, &f)) return f;
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(sys, H_SYS);
  if (!h || !cb) { pthread_mutex_unlock(&g_lock); return h ? E_INVALIDARG : E_HANDLE; }
  if (h->cb) { pthread_mutex_unlock(&g_lock); return HCS_E_CALLBACK_ALREADY_SET; }
  handle *c = new_handle(H_CB);
  c->fn = cb;
  c->ctx = ctx;
  c->owner = h;
  h->cb = c;
  h->ever_registered = 1;
  /* Deliver what HCS held back (the create completion) from a shim thread, as HCS would. */
  if (h->nqueue) {
    work *w = calloc(1, sizeof *w);
    w->kind = W_FLUSH;
    w->target = h;
    w->delay = 0;
    g_pending++;
    pthread_t t;
    pthread_create(&t, NULL, work_thread, w);
    pthread_detach(t);
  }
  pthread_mutex_unlock(&g_lock);
  *out = c;
  return S_OK;
}

/* Waits for callbacks running on other threads, so the caller may free the callback afterwards. */
EXPORT HRESULT HcsUnregisterComputeSystemCallback(HANDLE cbh) {
  count_call(__func__);
  pthread_mutex_lock(&g_lock);
  handle *c = find_handle(cbh, H_CB);
  if (!c) { pthread_mutex_unlock(&g_lock); return E_HANDLE; }
  c->dead = 1;
  if (c->owner) c->owner->cb = NULL;
  unlink_handle(c);
  while (c->delivering > 0) pthread_cond_wait(&g_cond, &g_lock);
  free(c);
  pthread_mutex_unlock(&g_lock);
  return S_OK;
}

EXPORT HRESULT HcsCreateProcess(HANDLE sys, const char16_t *params16, HCS_PROCESS_INFORMATION *info, HANDLE *out, char16_t **result) {
  count_call(__func__);
  *out = NULL;
  if (result) *result = NULL;
  memset(info, 0, sizeof *info);
  SYNC_FAULT(__func__, result);
  char *params = u16to8(params16);
  verr e = {{0}};
  int exit_now, pipes[3];
  uint32_t code = 0;
  HRESULT hr = process_params(params ? params : "", &exit_now, &code, pipes, &e);
  free(params);
  if (hr < 0) return fail_with(result, hr, __func__, &e);
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(sys, H_SYS);
  if (!h || h->sys->state != ST_RUNNING) {
    pthread_mutex_unlock(&g_lock);
    snprintf(e.msg, sizeof e.msg, h ? "The compute system is not running." : "The handle is invalid.");
    return fail_with(result, h ? V1_INVALID_STATE : E_HANDLE, __func__, &e);
  }
  process *p = calloc(1, sizeof *p);
  p->pid = h->sys->next_pid++;
  p->exited = exit_now;
  p->exit_code = code;
  p->next = h->sys->procs;
  h->sys->procs = p;
  handle *ph = new_handle(H_PROC);
  ph->sys = h->sys;
  ph->proc = p;
  h->sys->refs++;
  info->ProcessId = p->pid;
  info->StdInput = pipes[0] ? new_pipe() : NULL;
  info->StdOutput = pipes[1] ? new_pipe() : NULL;
  info->StdError = pipes[2] ? new_pipe() : NULL;
  pthread_mutex_unlock(&g_lock);
  *out = ph;
  return S_OK;
}

EXPORT HRESULT HcsCloseProcess(HANDLE proc) {
  count_call(__func__);
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(proc, H_PROC);
  if (!h) { pthread_mutex_unlock(&g_lock); return E_HANDLE; }
  system_t *s = h->sys;
  unlink_handle(h);
  free(h);
  release_system(s);
  pthread_mutex_unlock(&g_lock);
  return S_OK;
}

static HRESULT v1_proc_stop(const char *fn, HANDLE proc, const char16_t *options, char16_t **result, uint32_t code) {
  if (result) *result = NULL;
  SYNC_FAULT(fn, result);
  verr e = {{0}};
  if (options) {
    char *o = u16to8(options);
    HRESULT hr = signal_options(o, &e);
    free(o);
    if (hr < 0) return fail_with(result, hr, fn, &e);
  }
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(proc, H_PROC);
  HRESULT hr = !h ? E_HANDLE : h->proc->exited ? HCS_E_PROCESS_ALREADY_STOPPED : S_OK;
  if (hr >= 0) { h->proc->exited = 1; h->proc->exit_code = code; pthread_cond_broadcast(&g_cond); }
  pthread_mutex_unlock(&g_lock);
  if (hr < 0) { snprintf(e.msg, sizeof e.msg, "The process cannot be stopped."); return fail_with(result, hr, fn, &e); }
  return S_OK;
}

EXPORT HRESULT HcsTerminateProcess(HANDLE proc, char16_t **result) {
  count_call(__func__);
  return v1_proc_stop(__func__, proc, NULL, result, 137);
}

EXPORT HRESULT HcsSignalProcess(HANDLE proc, const char16_t *options, char16_t **result) {
  count_call(__func__);
  static const char16_t empty[] = {0};
  return v1_proc_stop(__func__, proc, options ? options : empty, result, 130);
}

EXPORT HRESULT HcsGetProcessProperties(HANDLE proc, char16_t **props, char16_t **result) {
  count_call(__func__);
  *props = NULL;
  if (result) *result = NULL;
  SYNC_FAULT(__func__, result);
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(proc, H_PROC);
  if (!h) { pthread_mutex_unlock(&g_lock); verr e = {"The handle is invalid."}; return fail_with(result, E_HANDLE, __func__, &e); }
  sb b = {0};
  process_status(&b, h->proc);
  pthread_mutex_unlock(&g_lock);
  put_out(props, b.p);
  free(b.p);
  return S_OK;
}

#else
/* ======================================================================== */
/* computecore.dll                                                           */

/* v2 faults on a call that takes an operation: the call fails, and (like HCS) the
 * operation already carries the error document that HcsGetOperationResult returns. */
static int v2_sync_fault(const char *fn, handle *op, HRESULT *hr) {
  if (!take_sync_fault(fn, hr)) return 0;
  if (op) {
    op->op_state = OP_DONE;
    op->op_hr = *hr;
    free(op->op_doc);
    op->op_doc = error_doc(*hr, fn, "injected failure");
  }
  return 1;
}

static HRESULT op_fail_now(handle *op, HRESULT hr, const char *fn, verr *e) {
  op->op_state = OP_DONE;
  op->op_hr = hr;
  free(op->op_doc);
  op->op_doc = error_doc(hr, fn, e->msg[0] ? e->msg : "The operation failed.");
  return hr;
}

/* Validates the operation handle for a new call (g_lock held). */
static HRESULT op_for_call(HANDLE operation, handle **out) {
  handle *op = find_handle(operation, H_OP);
  if (!op) return E_HANDLE;
  if (op->op_state != OP_UNUSED) return HCS_E_OPERATION_ALREADY_STARTED;
  *out = op;
  return S_OK;
}

EXPORT HANDLE HcsCreateOperation(const void *context, void *callback) {
  count_call(__func__);
  (void)context;
  HRESULT f;
  if (take_sync_fault(__func__, &f)) return NULL; /* out of resources */
  if (callback) return NULL; /* completion callbacks are not emulated; the binding never uses them */
  pthread_mutex_lock(&g_lock);
  handle *h = new_handle(H_OP);
  pthread_mutex_unlock(&g_lock);
  return h;
}

EXPORT void HcsCloseOperation(HANDLE operation) {
  count_call(__func__);
  pthread_mutex_lock(&g_lock);
  handle *op = find_handle(operation, H_OP);
  if (op) {
    unlink_handle(op);
    if (!op->op_busy) { free(op->op_doc); free(op); }
  }
  pthread_mutex_unlock(&g_lock);
}

EXPORT HRESULT HcsCancelOperation(HANDLE operation) {
  count_call(__func__);
  (void)operation;
  return E_NOTIMPL; /* documented behaviour today */
}

static HRESULT op_result(handle *op, char16_t **doc, HCS_PROCESS_INFORMATION *info) {
  if (op->op_state == OP_UNUSED) return HCS_E_OPERATION_NOT_STARTED;
  put_out(doc, op->op_doc);
  if (info) *info = op->op_info;
  return op->op_hr;
}

EXPORT HRESULT HcsGetOperationResult(HANDLE operation, char16_t **doc) {
  count_call(__func__);
  if (doc) *doc = NULL;
  pthread_mutex_lock(&g_lock);
  handle *op = find_handle(operation, H_OP);
  HRESULT hr = !op ? E_HANDLE : op->op_state == OP_RUNNING ? HCS_E_OPERATION_PENDING : op_result(op, doc, NULL);
  pthread_mutex_unlock(&g_lock);
  return hr;
}

static HRESULT wait_op(HANDLE operation, DWORD timeout, HCS_PROCESS_INFORMATION *info, char16_t **doc) {
  if (doc) *doc = NULL;
  if (info) memset(info, 0, sizeof *info);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += timeout / 1000;
  deadline.tv_nsec += (long)(timeout % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000L; }
  pthread_mutex_lock(&g_lock);
  handle *op = find_handle(operation, H_OP);
  if (!op) { pthread_mutex_unlock(&g_lock); return E_HANDLE; }
  while (op->op_state == OP_RUNNING) {
    if (timeout == 0xFFFFFFFFu) pthread_cond_wait(&g_cond, &g_lock);
    else if (pthread_cond_timedwait(&g_cond, &g_lock, &deadline) == ETIMEDOUT && op->op_state == OP_RUNNING) {
      pthread_mutex_unlock(&g_lock);
      return HCS_E_OPERATION_TIMEOUT;
    }
  }
  HRESULT hr = op_result(op, doc, info);
  pthread_mutex_unlock(&g_lock);
  return hr;
}

EXPORT HRESULT HcsWaitForOperationResult(HANDLE operation, DWORD timeout, char16_t **doc) {
  count_call(__func__);
  return wait_op(operation, timeout, NULL, doc);
}

EXPORT HRESULT HcsWaitForOperationResultAndProcessInfo(HANDLE operation, DWORD timeout, HCS_PROCESS_INFORMATION *info, char16_t **doc) {
  count_call(__func__);
  return wait_op(operation, timeout, info, doc);
}

EXPORT HRESULT HcsEnumerateComputeSystems(const char16_t *query16, HANDLE operation) {
  count_call(__func__);
  char *q = u16to8(query16);
  verr e = {{0}};
  pthread_mutex_lock(&g_lock);
  handle *op;
  HRESULT hr = op_for_call(operation, &op);
  if (hr >= 0 && !v2_sync_fault(__func__, op, &hr)) {
    hr = check_optional_json(q, &e);
    if (hr < 0) op_fail_now(op, hr, __func__, &e);
    else { spawn_work(W_ENUM, NULL, op, NULL, NULL, q, __func__); q = NULL; }
  }
  pthread_mutex_unlock(&g_lock);
  free(q);
  return hr;
}

EXPORT HRESULT HcsCreateComputeSystem(const char16_t *id16, const char16_t *config16, HANDLE operation, const void *sd, HANDLE *out) {
  count_call(__func__);
  (void)sd;
  *out = NULL;
  char *id = u16to8(id16), *cfg = u16to8(config16);
  remember_doc(cfg);
  verr e = {{0}};
  pthread_mutex_lock(&g_lock);
  handle *op;
  HRESULT hr = op_for_call(operation, &op);
  if (hr < 0 || v2_sync_fault(__func__, op, &hr)) goto out;
  if (!id || !id[0] || !cfg) { snprintf(e.msg, sizeof e.msg, "id and configuration are required"); hr = op_fail_now(op, E_INVALIDARG, __func__, &e); goto out; }
  if (find_system(id)) {
    snprintf(e.msg, sizeof e.msg, "A compute system with id %s already exists.", id);
    hr = op_fail_now(op, HCS_E_SYSTEM_ALREADY_EXISTS, __func__, &e);
    goto out;
  }
  system_t *s = new_system(id);
  hr = validate_create(cfg, s, &e);
  if (hr < 0) {
    s->listed = 0;
    maybe_free_system(s);
    op_fail_now(op, hr, __func__, &e);
    goto out;
  }
  /* The handle exists even while the operation is pending (spec 2.3). */
  handle *h = new_handle(H_SYS);
  h->sys = s;
  s->refs++;
  *out = h;
  spawn_work(W_CREATE, s, op, NULL, NULL, cfg, __func__);
  cfg = NULL;
out:
  pthread_mutex_unlock(&g_lock);
  free(id);
  free(cfg);
  return hr;
}

EXPORT HRESULT HcsOpenComputeSystem(const char16_t *id16, DWORD access, HANDLE *out) {
  count_call(__func__);
  *out = NULL;
  HRESULT f;
  if (take_sync_fault(__func__, &f)) return f;
  if (access != GENERIC_ALL) return E_INVALIDARG;
  char *id = u16to8(id16);
  pthread_mutex_lock(&g_lock);
  system_t *s = id ? find_system(id) : NULL;
  HRESULT hr = S_OK;
  if (!s || s->state == ST_CREATING) hr = HCS_E_SYSTEM_NOT_FOUND;
  else {
    handle *h = new_handle(H_SYS);
    h->sys = s;
    s->refs++;
    *out = h;
  }
  pthread_mutex_unlock(&g_lock);
  free(id);
  return hr;
}

EXPORT void HcsCloseComputeSystem(HANDLE sys) {
  count_call(__func__);
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(sys, H_SYS);
  if (h) close_system_handle(h);
  pthread_mutex_unlock(&g_lock);
}

static HRESULT v2_system_call(const char *fn, HANDLE sys, HANDLE operation, const char16_t *text16, int kind, int parse_kind) {
  char *text = u16to8(text16);
  if (kind == W_MODIFY) remember_doc(text);
  verr e = {{0}};
  pthread_mutex_lock(&g_lock);
  handle *op, *h = find_handle(sys, H_SYS);
  HRESULT hr = op_for_call(operation, &op);
  if (hr < 0) goto out;
  if (!h) { snprintf(e.msg, sizeof e.msg, "The handle is invalid."); hr = op_fail_now(op, E_HANDLE, fn, &e); goto out; }
  if (v2_sync_fault(fn, op, &hr)) goto out;
  /* Parse-time failures fail the call itself; state checks happen when the work runs. */
  if (parse_kind == 1) {
    jv *doc = text ? jparse(text) : NULL;
    if (!doc) { snprintf(e.msg, sizeof e.msg, "The JSON document is invalid."); hr = op_fail_now(op, HCS_E_INVALID_JSON, fn, &e); goto out; }
    jfree(doc);
  } else if (parse_kind == 2) {
    if ((hr = check_property_query(text, &e)) < 0) { op_fail_now(op, hr, fn, &e); goto out; }
  } else if ((hr = check_optional_json(text, &e)) < 0) { op_fail_now(op, hr, fn, &e); goto out; }
  if ((kind == W_SHUTDOWN || kind == W_TERMINATE) && h->sys->state == ST_STOPPED) {
    snprintf(e.msg, sizeof e.msg, "The compute system has already stopped.");
    hr = op_fail_now(op, HCS_E_SYSTEM_ALREADY_STOPPED, fn, &e);
    goto out;
  }
  spawn_work(kind, h->sys, op, NULL, NULL, text, fn);
  text = NULL;
out:
  pthread_mutex_unlock(&g_lock);
  free(text);
  return hr;
}

EXPORT HRESULT HcsStartComputeSystem(HANDLE sys, HANDLE op, const char16_t *options) {
  count_call(__func__);
  return v2_system_call(__func__, sys, op, options, W_START, 0);
}
EXPORT HRESULT HcsShutDownComputeSystem(HANDLE sys, HANDLE op, const char16_t *options) {
  count_call(__func__);
  return v2_system_call(__func__, sys, op, options, W_SHUTDOWN, 0);
}
EXPORT HRESULT HcsTerminateComputeSystem(HANDLE sys, HANDLE op, const char16_t *options) {
  count_call(__func__);
  return v2_system_call(__func__, sys, op, options, W_TERMINATE, 0);
}
EXPORT HRESULT HcsPauseComputeSystem(HANDLE sys, HANDLE op, const char16_t *options) {
  count_call(__func__);
  return v2_system_call(__func__, sys, op, options, W_PAUSE, 0);
}
EXPORT HRESULT HcsResumeComputeSystem(HANDLE sys, HANDLE op, const char16_t *options) {
  count_call(__func__);
  return v2_system_call(__func__, sys, op, options, W_RESUME, 0);
}
EXPORT HRESULT HcsGetComputeSystemProperties(HANDLE sys, HANDLE op, const char16_t *query) {
  count_call(__func__);
  return v2_system_call(__func__, sys, op, query, W_PROPS, 2);
}
EXPORT HRESULT HcsModifyComputeSystem(HANDLE sys, HANDLE op, const char16_t *config, HANDLE identity) {
  count_call(__func__);
  (void)identity;
  return v2_system_call(__func__, sys, op, config, W_MODIFY, 1);
}

#ifndef SHIM_OMIT_OPTIONAL
static HRESULT wait_until(int (*done)(void *), void *arg, DWORD timeout) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += timeout / 1000;
  deadline.tv_nsec += (long)(timeout % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000L; }
  while (!done(arg)) {
    if (timeout == 0xFFFFFFFFu) pthread_cond_wait(&g_cond, &g_lock);
    else if (pthread_cond_timedwait(&g_cond, &g_lock, &deadline) == ETIMEDOUT && !done(arg)) return HCS_E_OPERATION_TIMEOUT;
  }
  return S_OK;
}

static int system_stopped(void *a) { return ((system_t *)a)->state == ST_STOPPED; }
static int process_exited(void *a) { return ((process *)a)->exited; }

EXPORT HRESULT HcsWaitForComputeSystemExit(HANDLE sys, DWORD timeout, char16_t **result) {
  count_call(__func__);
  if (result) *result = NULL;
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(sys, H_SYS);
  if (!h) { pthread_mutex_unlock(&g_lock); return E_HANDLE; }
  system_t *s = h->sys;
  s->pins++; /* the handle may be closed by another thread while we wait */
  HRESULT hr = wait_until(system_stopped, s, timeout);
  if (hr >= 0) {
    char buf[128];
    snprintf(buf, sizeof buf, "{\"Status\":%d,\"ExitType\":\"%s\"}", s->exit_status, s->exit_type);
    put_out(result, buf);
  }
  s->pins--;
  maybe_free_system(s);
  pthread_mutex_unlock(&g_lock);
  return hr;
}

EXPORT HRESULT HcsWaitForProcessExit(HANDLE proc, DWORD timeout, char16_t **result) {
  count_call(__func__);
  if (result) *result = NULL;
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(proc, H_PROC);
  if (!h) { pthread_mutex_unlock(&g_lock); return E_HANDLE; }
  process *p = h->proc;
  system_t *s = h->sys;
  s->pins++;
  HRESULT hr = wait_until(process_exited, p, timeout);
  if (hr >= 0) {
    sb b = {0};
    process_status(&b, p);
    put_out(result, b.p);
    free(b.p);
  }
  s->pins--;
  maybe_free_system(s);
  pthread_mutex_unlock(&g_lock);
  return hr;
}
#endif

EXPORT HRESULT HcsCreateProcess(HANDLE sys, const char16_t *params16, HANDLE operation, const void *sd, HANDLE *out) {
  count_call(__func__);
  (void)sd;
  *out = NULL;
  char *params = u16to8(params16);
  verr e = {{0}};
  int exit_now, pipes[3];
  uint32_t code = 0;
  pthread_mutex_lock(&g_lock);
  handle *op, *h = find_handle(sys, H_SYS);
  HRESULT hr = op_for_call(operation, &op);
  if (hr < 0) goto out;
  if (!h) { snprintf(e.msg, sizeof e.msg, "The handle is invalid."); hr = op_fail_now(op, E_HANDLE, __func__, &e); goto out; }
  if (v2_sync_fault(__func__, op, &hr)) goto out;
  if ((hr = process_params(params ? params : "", &exit_now, &code, pipes, &e)) < 0) { op_fail_now(op, hr, __func__, &e); goto out; }
  process *p = calloc(1, sizeof *p);
  p->pid = h->sys->next_pid++;
  p->exited = exit_now;
  p->exit_code = code;
  p->next = h->sys->procs;
  h->sys->procs = p;
  handle *ph = new_handle(H_PROC);
  ph->sys = h->sys;
  ph->proc = p;
  h->sys->refs++;
  *out = ph;
  work *w = spawn_work(W_PCREATE, h->sys, op, NULL, p, NULL, __func__);
  memcpy(w->pipes, pipes, sizeof pipes);
out:
  pthread_mutex_unlock(&g_lock);
  free(params);
  return hr;
}

EXPORT void HcsCloseProcess(HANDLE proc) {
  count_call(__func__);
  pthread_mutex_lock(&g_lock);
  handle *h = find_handle(proc, H_PROC);
  if (h) {
    system_t *s = h->sys;
    unlink_handle(h);
    free(h);
    release_system(s);
  }
  pthread_mutex_unlock(&g_lock);
}

static HRESULT v2_process_call(const char *fn, HANDLE proc, HANDLE operation, const char16_t *text16, int kind) {
  char *text = u16to8(text16);
  verr e = {{0}};
  pthread_mutex_lock(&g_lock);
  handle *op, *h = find_handle(proc, H_PROC);
  HRESULT hr = op_for_call(operation, &op);
  if (hr < 0) goto out;
  if (!h) { snprintf(e.msg, sizeof e.msg, "The handle is invalid."); hr = op_fail_now(op, E_HANDLE, fn, &e); goto out; }
  if (v2_sync_fault(fn, op, &hr)) goto out;
  if (kind == W_PSIGNAL) hr = signal_options(text ? text : "", &e);
  else hr = check_optional_json(text, &e);
  if (hr < 0) { op_fail_now(op, hr, fn, &e); goto out; }
  spawn_work(kind, h->sys, op, NULL, h->proc, NULL, fn);
out:
  pthread_mutex_unlock(&g_lock);
  free(text);
  return hr;
}

EXPORT HRESULT HcsTerminateProcess(HANDLE proc, HANDLE op, const char16_t *options) {
  count_call(__func__);
  return v2_process_call(__func__, proc, op, options, W_PTERM);
}
EXPORT HRESULT HcsSignalProcess(HANDLE proc, HANDLE op, const char16_t *options) {
  count_call(__func__);
  return v2_process_call(__func__, proc, op, options, W_PSIGNAL);
}
EXPORT HRESULT HcsGetProcessProperties(HANDLE proc, HANDLE op, const char16_t *query) {
  count_call(__func__);
  return v2_process_call(__func__, proc, op, query, W_PPROPS);
}

EXPORT HRESULT HcsGetServiceProperties(const char16_t *query16, char16_t **result) {
  count_call(__func__);
  *result = NULL;
  HRESULT f;
  if (take_sync_fault(__func__, &f)) {
    char *d = error_doc(f, __func__, "injected failure");
    put_out(result, d);
    free(d);
    return f;
  }
  char *q = u16to8(query16), *out = NULL;
  verr e = {{0}};
  pthread_mutex_lock(&g_lock);
  HRESULT hr = service_query(q, &out, &e);
  pthread_mutex_unlock(&g_lock);
  free(q);
  if (hr < 0) {
    char *d = error_doc(hr, __func__, e.msg);
    put_out(result, d);
    free(d);
    return hr;
  }
  put_out(result, out);
  free(out);
  return S_OK;
}

#ifndef SHIM_OMIT_REQUIRED
EXPORT HRESULT HcsGrantVmAccess(const char16_t *vmid, const char16_t *path) {
  count_call(__func__);
  HRESULT f;
  if (take_sync_fault(__func__, &f)) return f;
  return do_grant(vmid, path);
}
#endif

EXPORT HRESULT HcsRevokeVmAccess(const char16_t *vmid, const char16_t *path) {
  count_call(__func__);
  char *id = u16to8(vmid), *p = u16to8(path);
  HRESULT hr = E_NOT_FOUND;
  pthread_mutex_lock(&g_lock);
  for (grant **gp = &g_grants; id && p && *gp; gp = &(*gp)->next)
    if (strcmp((*gp)->id, id) == 0 && strcmp((*gp)->path, p) == 0) {
      grant *g = *gp;
      *gp = g->next;
      free(g->id); free(g->path); free(g);
      hr = S_OK;
      break;
    }
  pthread_mutex_unlock(&g_lock);
  free(id); free(p);
  return hr;
}
#endif
