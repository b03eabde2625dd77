/*
 * vhdx_native: the few Linux file system calls that Node.js does not expose, for the file backend
 * (and for the zeros that `vhdx convert IN -` sends into a pipe).
 *
 *   fallocate(fd, mode, offset, length)                       -> 0 or -errno
 *   copyFileRangeAsync(fdIn, offIn, fdOut, offOut, length)    -> Promise of the bytes copied (>= 0) or
 *                                                                -errno, copied on the thread pool
 *   syncFileRangeAsync(fd, offset, length, flags)            -> Promise of 0 or -errno: sync_file_range on the
 *                                                                thread pool (used to start writeback early)
 *   alignedBuffer(length)                                     -> an ArrayBuffer of `length` bytes whose
 *                                                                memory starts on a 4096-byte boundary
 *                                                                (O_DIRECT needs aligned memory, which
 *                                                                JavaScript cannot ask for)
 *   seekData(fd, offset)                                      -> the first offset >= `offset` that holds
 *                                                                data (lseek SEEK_DATA: holes and
 *                                                                unwritten extents read as zeros), or
 *                                                                -errno (-ENXIO: no data after it)
 *   pipeZeros(fd, length, pipeSize)                           -> bytes of zeros moved into the pipe fd
 *                                                                (>= 0) or -errno: vmsplice(2) of one
 *                                                                never-written zero region, so no byte is
 *                                                                copied; a pipeSize > 0 first grows the
 *                                                                pipe to it (F_SETPIPE_SZ, best effort)
 *
 * Errors are returned, never thrown: the caller decides whether to fall back to plain reads and
 * writes (EOPNOTSUPP, EXDEV, ENOSYS ...) or to report the error. Offsets and lengths arrive as
 * JavaScript numbers and are checked to be non-negative safe integers before any call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <node_api.h>

#define MAX_SAFE 9007199254740991LL

static int arg_i64(napi_env env, napi_value value, int64_t *out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) return 0;
  if (!(d >= 0 && d <= (double)MAX_SAFE) || d != (double)(int64_t)d) return 0;
  *out = (int64_t)d;
  return 1;
}

static napi_value number(napi_env env, int64_t v) {
  napi_value out;
  napi_create_double(env, (double)v, &out);
  return out;
}

/* Reads `count` non-negative integer arguments, or throws a TypeError and returns 0. */
static int args_i64(napi_env env, napi_callback_info info, size_t count, int64_t *out) {
  napi_value argv[6];
  size_t argc = 6;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < count) {
    napi_throw_type_error(env, NULL, "vhdx_native: missing argument");
    return 0;
  }
  for (size_t i = 0; i < count; i++) {
    if (!arg_i64(env, argv[i], &out[i])) {
      napi_throw_type_error(env, NULL, "vhdx_native: arguments must be non-negative safe integers");
      return 0;
    }
  }
  return 1;
}

static int64_t do_copy(int64_t fd_in, int64_t off_in, int64_t fd_out, int64_t off_out, int64_t length) {
#ifdef __linux__
  loff_t in = off_in, out = off_out;
  int64_t done = 0;
  while (done < length) {
    ssize_t n = copy_file_range((int)fd_in, &in, (int)fd_out, &out, (size_t)(length - done), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return done > 0 ? done : -errno;
    }
    if (n == 0) break; /* end of the input file */
    done += n;
  }
  return done;
#else
  (void)fd_in; (void)off_in; (void)fd_out; (void)off_out; (void)length;
  return -ENOSYS;
#endif
}

static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  int64_t a[4];
  if (!args_i64(env, info, 4, a)) return NULL;
#ifdef __linux__
  int rc;
  do rc = fallocate((int)a[0], (int)a[1], (off_t)a[2], (off_t)a[3]); while (rc < 0 && errno == EINTR);
  return number(env, rc < 0 ? -errno : 0);
#else
  return number(env, -ENOSYS);
#endif
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int kind;
  int64_t a[5];
  int64_t result;
} io_job;


static void job_complete(napi_env env, napi_status status, void *data) {
  io_job *job = data;
  if (status == napi_ok) {
    napi_resolve_deferred(env, job->deferred, number(env, job->result));
  } else {
    napi_value message, error;
    napi_create_string_utf8(env, "vhdx_native: call cancelled", NAPI_AUTO_LENGTH, &message);
    napi_create_error(env, NULL, message, &error);
    napi_reject_deferred(env, job->deferred, error);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static int64_t do_sync_range(int64_t fd, int64_t offset, int64_t length, int64_t flags) {
#ifdef __linux__
  int rc;
  do rc = sync_file_range((int)fd, (off64_t)offset, (off64_t)length, (unsigned int)flags); while (rc < 0 && errno == EINTR);
  return rc < 0 ? -errno : 0;
#else
  (void)fd; (void)offset; (void)length; (void)flags;
  return -ENOSYS;
#endif
}

/* One job kind per thread-pool call: its arguments in a[], its result. */
enum { JOB_COPY, JOB_SYNC_RANGE };

static void job_execute(napi_env env, void *data) {
  (void)env;
  io_job *job = data;
  if (job->kind == JOB_COPY) job->result = do_copy(job->a[0], job->a[1], job->a[2], job->a[3], job->a[4]);
  else job->result = do_sync_range(job->a[0], job->a[1], job->a[2], job->a[3]);
}

/* Queues `kind` with `count` integer arguments on the thread pool; returns its promise. */
static napi_value queue_job(napi_env env, napi_callback_info info, int kind, size_t count, const char *name) {
  int64_t a[5];
  if (!args_i64(env, info, count, a)) return NULL;
  io_job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "vhdx_native: out of memory");
    return NULL;
  }
  job->kind = kind;
  for (size_t i = 0; i < count; i++) job->a[i] = a[i];
  napi_value promise, work_name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &work_name);
  napi_create_async_work(env, NULL, work_name, job_execute, job_complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value js_copy_file_range_async(napi_env env, napi_callback_info info) {
  return queue_job(env, info, JOB_COPY, 5, "vhdx_copy_file_range");
}

static napi_value js_sync_file_range_async(napi_env env, napi_callback_info info) {
  return queue_job(env, info, JOB_SYNC_RANGE, 4, "vhdx_sync_file_range");
}

#define ALIGNMENT 4096
#define MAX_ALIGNED (1LL << 30)

static void free_aligned(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static napi_value js_aligned_buffer(napi_env env, napi_callback_info info) {
  int64_t a[1];
  if (!args_i64(env, info, 1, a)) return NULL;
  if (a[0] <= 0 || a[0] > MAX_ALIGNED || a[0] % ALIGNMENT != 0) {
    napi_throw_range_error(env, NULL, "vhdx_native: aligned buffer length must be a positive multiple of 4096 up to 1 GiB");
    return NULL;
  }
  void *memory = NULL;
  if (posix_memalign(&memory, ALIGNMENT, (size_t)a[0]) != 0) {
    napi_throw_error(env, NULL, "vhdx_native: out of memory");
    return NULL;
  }
  memset(memory, 0, (size_t)a[0]);
  napi_value out;
  if (napi_create_external_arraybuffer(env, memory, (size_t)a[0], free_aligned, NULL, &out) != napi_ok) {
    free(memory);
    napi_throw_error(env, NULL, "vhdx_native: cannot wrap aligned memory");
    return NULL;
  }
  return out;
}

#ifdef __linux__
#define ZERO_REGION (1 << 20)

/* Never written: vmsplice hands its pages to the pipe by reference, so any write would reach readers. */
static char zero_region[ZERO_REGION] __attribute__((aligned(4096)));
#endif

/*
 * Moves up to `length` zero bytes into a pipe without copying them. A non-blocking pipe that is full
 * returns what was moved so far, or -EAGAIN when nothing was; a blocking one waits, as write(2) does.
 */
static napi_value js_pipe_zeros(napi_env env, napi_callback_info info) {
  int64_t a[3];
  if (!args_i64(env, info, 3, a)) return NULL;
#ifdef __linux__
  int fd = (int)a[0];
  if (a[2] > 0 && a[2] <= INT32_MAX) {
    int current = fcntl(fd, F_GETPIPE_SZ);
    if (current >= 0 && current < a[2]) (void)fcntl(fd, F_SETPIPE_SZ, (int)a[2]); /* a smaller pipe still works */
  }
  /* vmsplice ignores O_NONBLOCK unless told: a non-blocking pipe stays non-blocking, as for write(2). */
  int status = a[1] > 0 ? fcntl(fd, F_GETFL) : 0;
  if (status < 0) return number(env, -errno);
  unsigned int flags = (status & O_NONBLOCK) ? SPLICE_F_NONBLOCK : 0;
  int64_t done = 0;
  while (done < a[1]) {
    struct iovec iov = {zero_region, (size_t)(a[1] - done < ZERO_REGION ? a[1] - done : ZERO_REGION)};
    ssize_t n = vmsplice(fd, &iov, 1, flags);
    if (n < 0) {
      if (errno == EINTR) continue;
      return number(env, done > 0 ? done : -errno); /* the error comes again on the next call */
    }
    done += n;
  }
  return number(env, done);
#else
  return number(env, -ENOSYS);
#endif
}

static napi_value js_seek_data(napi_env env, napi_callback_info info) {
  int64_t a[2];
  if (!args_i64(env, info, 2, a)) return NULL;
#if defined(__linux__) && defined(SEEK_DATA)
  off_t at = lseek((int)a[0], (off_t)a[1], SEEK_DATA);
  return number(env, at < 0 ? -errno : (int64_t)at);
#else
  return number(env, -ENOSYS);
#endif
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    {"fallocate", NULL, js_fallocate, NULL, NULL, NULL, napi_enumerable, NULL},
    {"copyFileRangeAsync", NULL, js_copy_file_range_async, NULL, NULL, NULL, napi_enumerable, NULL},
    {"syncFileRangeAsync", NULL, js_sync_file_range_async, NULL, NULL, NULL, napi_enumerable, NULL},
    {"alignedBuffer", NULL, js_aligned_buffer, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pipeZeros", NULL, js_pipe_zeros, NULL, NULL, NULL, napi_enumerable, NULL},
    {"seekData", NULL, js_seek_data, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
