/* JNI glue for org.mikv.Mikv over the C API. Failures throw org.mikv.MikvException; nothing crashes on a null or
 * closed handle. Text crosses as UTF-16 both ways (utf8_utf16.h says why), never through JNI's modified UTF-8. */
#include <jni.h>
#include <mikv/mikv.h>
#include <stdlib.h>
#include <string.h>

#include "utf8_utf16.h"

static void throw_out_of_memory(JNIEnv* env, const char* what) {
  jclass oom = (*env)->FindClass(env, "java/lang/OutOfMemoryError");
  if (oom != NULL) (*env)->ThrowNew(env, oom, what);
}

/* A Java string of n bytes of UTF-8 (ill-formed bytes become U+FFFD); NULL with an OutOfMemoryError pending. */
static jstring string_of_utf8(JNIEnv* env, const char* s, size_t n) {
  jchar* units = (jchar*)malloc((n ? n : 1) * sizeof(jchar));
  if (units == NULL) {
    throw_out_of_memory(env, "mikv: text for Java");
    return NULL;
  }
  const size_t count = mikv_utf8_to_utf16(s, n, (uint16_t*)units);
  jstring out = (*env)->NewString(env, units, (jsize)count);
  free(units);
  return out;
}

/* A Java string as NUL-terminated UTF-8 (free() it); NULL with an OutOfMemoryError pending. */
static char* utf8_of_string(JNIEnv* env, jstring s) {
  const jsize n = (*env)->GetStringLength(env, s);
  char* out = (char*)malloc(3 * (size_t)n + 1);
  const jchar* units = (*env)->GetStringChars(env, s, NULL);
  if (out == NULL || units == NULL) {
    free(out);
    if (units != NULL) (*env)->ReleaseStringChars(env, s, units);
    if (!(*env)->ExceptionCheck(env)) throw_out_of_memory(env, "mikv: text from Java");
    return NULL;
  }
  out[mikv_utf16_to_utf8((const uint16_t*)units, (size_t)n, out)] = 0;
  (*env)->ReleaseStringChars(env, s, units);
  return out;
}

static void throw_status(JNIEnv* env, mikv_status s, const char* message) {
  jclass cls = (*env)->FindClass(env, "org/mikv/MikvException");
  if (cls == NULL) return;
  jmethodID ctor = (*env)->GetMethodID(env, cls, "<init>", "(Ljava/lang/String;Ljava/lang/String;)V");
  jstring name = (*env)->NewStringUTF(env, mikv_status_name(s));  /* ASCII */
  if (message == NULL) message = "";
  jstring msg = string_of_utf8(env, message, strlen(message));  /* may hold a path's or a token's bytes */
  if (msg == NULL) return;
  jobject ex = (*env)->NewObject(env, cls, ctor, name, msg);
  (*env)->Throw(env, (jthrowable)ex);
}

JNIEXPORT jlong JNICALL Java_org_mikv_Mikv_nativeLoad(JNIEnv* env, jclass cls, jstring path) {
  (void)cls;
  if (path == NULL) {
    throw_status(env, MIKV_ERR_INVALID_ARGUMENT, "path is null");
    return 0;
  }
  char* p = utf8_of_string(env, path);
  if (p == NULL) return 0;
  mikv_model* model = NULL;
  mikv_status s = mikv_model_load(p, &model);
  free(p);
  if (s != MIKV_OK) throw_status(env, s, mikv_last_error());
  return (jlong)(intptr_t)model;
}

JNIEXPORT jint JNICALL Java_org_mikv_Mikv_nativeVocabSize(JNIEnv* env, jclass cls, jlong handle) {
  (void)cls;
  mikv_model_info info;
  info.struct_size = sizeof info;
  mikv_status s = mikv_model_get_info((const mikv_model*)(intptr_t)handle, &info);
  if (s != MIKV_OK) {
    throw_status(env, s, mikv_last_error());
    return 0;
  }
  return info.vocab_size;
}

JNIEXPORT void JNICALL Java_org_mikv_Mikv_nativeFreeModel(JNIEnv* env, jclass cls, jlong handle) {
  (void)env, (void)cls;
  mikv_model_free((mikv_model*)(intptr_t)handle);
}

JNIEXPORT jlong JNICALL Java_org_mikv_Mikv_nativeCreate(JNIEnv* env, jclass cls, jlong model, jint context,
                                                         jint threads, jstring kv_config, jlong budget,
                                                         jboolean balance_keys) {
  (void)cls;
  mikv_session_config c;
  mikv_session_config_init(&c);
  c.context = context;
  c.threads = threads;
  c.kv_budget_bytes = (uint64_t)budget;
  c.kv_balance_keys = balance_keys ? 1 : 0;
  if (kv_config != NULL) {
    /* A policy name ("mikv") or a whole cache ("mikv/int8@0.01/k4v2:g64/int2:g64+rot"): the C API parses both. */
    char* spec = utf8_of_string(env, kv_config);
    if (spec == NULL) return 0;
    const mikv_status st = mikv_session_config_set_kv(&c, spec);
    free(spec);
    if (st != MIKV_OK) {
      throw_status(env, st, mikv_last_error());
      return 0;
    }
  }
  mikv_session* s = NULL;
  mikv_status st = mikv_session_create((const mikv_model*)(intptr_t)model, &c, &s);
  if (st != MIKV_OK) throw_status(env, st, mikv_last_error());
  return (jlong)(intptr_t)s;
}

struct listener {
  JNIEnv* env;
  jobject obj;
  jmethodID on_text;
  char* text;
  size_t len, cap;
  size_t streamed;  /* bytes of text passed to the listener: up to a character boundary */
  int stopped;      /* the listener asked to stop: it is not called again */
};

/* Passes text[streamed, upto) to the listener; returns nonzero to stop (an exception, or the listener said so). */
static int stream_to(struct listener* l, size_t upto) {
  if (l->obj == NULL || l->stopped || upto <= l->streamed) return 0;
  jstring s = string_of_utf8(l->env, l->text + l->streamed, upto - l->streamed);
  if (s == NULL) return 1;
  l->streamed = upto;
  const jboolean go_on = (*l->env)->CallBooleanMethod(l->env, l->obj, l->on_text, s);
  (*l->env)->DeleteLocalRef(l->env, s);
  l->stopped = !go_on;
  return (*l->env)->ExceptionCheck(l->env) || !go_on;
}

static int on_token(void* user, int32_t token, const char* piece, size_t n) {
  (void)token;
  struct listener* l = (struct listener*)user;
  if (l->len + n + 1 > l->cap) {
    size_t cap = (l->cap + n + 1) * 2;
    char* t = (char*)realloc(l->text, cap);
    if (t == NULL) return 1;
    l->text = t;
    l->cap = cap;
  }
  memcpy(l->text + l->len, piece, n);
  l->len += n;
  l->text[l->len] = 0;
  /* A piece may end inside a character (byte tokens, BPE pieces of a multi-byte character): its first bytes wait
   * for the next piece, so the listener gets whole characters. */
  return stream_to(l, l->streamed + mikv_utf8_complete_prefix(l->text + l->streamed, l->len - l->streamed));
}

JNIEXPORT jstring JNICALL Java_org_mikv_Mikv_nativeGenerate(JNIEnv* env, jclass cls, jlong model_handle,
                                                             jlong session_handle, jstring prompt, jint max_tokens,
                                                             jobject listener) {
  (void)cls;
  const mikv_model* model = (const mikv_model*)(intptr_t)model_handle;
  mikv_session* s = (mikv_session*)(intptr_t)session_handle;
  if (model == NULL || s == NULL || prompt == NULL) {
    throw_status(env, MIKV_ERR_INVALID_ARGUMENT, "model, session or prompt is null (closed?)");
    return NULL;
  }
  char* text = utf8_of_string(env, prompt);
  if (text == NULL) return NULL;
  size_t n = 0;
  mikv_tokenize(model, text, strlen(text), 1, NULL, 0, &n); /* asks for the size */
  int32_t* ids = (int32_t*)malloc((n ? n : 1) * sizeof(int32_t));
  mikv_status st = ids ? mikv_tokenize(model, text, strlen(text), 1, ids, n, &n) : MIKV_ERR_OUT_OF_MEMORY;
  free(text);
  if (st != MIKV_OK) {
    free(ids);
    throw_status(env, st, mikv_last_error());
    return NULL;
  }
  struct listener l = {env, listener, NULL, NULL, 0, 0, 0, 0};
  if (listener != NULL) {
    jclass lc = (*env)->GetObjectClass(env, listener);
    l.on_text = (*env)->GetMethodID(env, lc, "onText", "(Ljava/lang/String;)Z");
  }
  st = mikv_session_generate(s, ids, n, max_tokens, on_token, &l);
  free(ids);
  if ((*env)->ExceptionCheck(env)) {
    free(l.text);
    return NULL;
  }
  if (st != MIKV_OK) {
    free(l.text);
    throw_status(env, st, mikv_session_error(s));
    return NULL;
  }
  /* What the last piece left waiting (a character the generation stopped inside) goes out as U+FFFD: the streamed
   * pieces make the returned text. */
  stream_to(&l, l.len);
  if ((*env)->ExceptionCheck(env)) {
    free(l.text);
    return NULL;
  }
  jstring out = string_of_utf8(env, l.text ? l.text : "", l.len);
  free(l.text);
  return out;
}

JNIEXPORT void JNICALL Java_org_mikv_Mikv_nativeReset(JNIEnv* env, jclass cls, jlong handle) {
  (void)cls;
  mikv_status st = mikv_session_reset((mikv_session*)(intptr_t)handle);
  if (st != MIKV_OK) throw_status(env, st, mikv_last_error());
}

/* The session's statistics into *stats; 0, with a MikvException pending, where the call fails (a closed session). */
static int get_stats(JNIEnv* env, const mikv_session* s, mikv_session_stats* stats) {
  memset(stats, 0, sizeof *stats);
  stats->struct_size = sizeof *stats;
  const mikv_status st = mikv_session_get_stats(s, stats);
  if (st != MIKV_OK) throw_status(env, st, mikv_last_error());
  return st == MIKV_OK;
}

/* Each thread's share of the lockstep's projection rows (mikv_session_get_thread_shares), as many as the session's
 * threads. */
JNIEXPORT jdoubleArray JNICALL Java_org_mikv_Mikv_nativeThreadShares(JNIEnv* env, jclass cls, jlong handle) {
  (void)cls;
  const mikv_session* s = (const mikv_session*)(intptr_t)handle;
  mikv_session_stats stats;
  if (!get_stats(env, s, &stats)) return NULL;
  const size_t n = stats.threads > 0 ? (size_t)stats.threads : 1;
  double* shares = (double*)malloc(n * sizeof(double));
  if (shares == NULL) {
    throw_out_of_memory(env, "mikv: thread shares");
    return NULL;
  }
  const mikv_status st = mikv_session_get_thread_shares(s, shares, n);
  jdoubleArray out = NULL;
  if (st != MIKV_OK) {
    throw_status(env, st, mikv_last_error());
  } else {
    out = (*env)->NewDoubleArray(env, (jsize)n);
    if (out != NULL) (*env)->SetDoubleArrayRegion(env, out, 0, (jsize)n, shares);
  }
  free(shares);
  return out;
}

JNIEXPORT void JNICALL Java_org_mikv_Mikv_nativeSetThreadShares(JNIEnv* env, jclass cls, jlong handle,
                                                                jdoubleArray weights) {
  (void)cls;
  mikv_session* s = (mikv_session*)(intptr_t)handle;
  if (weights == NULL) {
    throw_status(env, MIKV_ERR_INVALID_ARGUMENT, "weights must not be null");
    return;
  }
  const jsize n = (*env)->GetArrayLength(env, weights);
  jdouble* w = (*env)->GetDoubleArrayElements(env, weights, NULL);
  if (w == NULL) return; /* an OutOfMemoryError is pending */
  const mikv_status st = mikv_session_set_thread_shares(s, w, (size_t)n);
  (*env)->ReleaseDoubleArrayElements(env, weights, w, JNI_ABORT);
  if (st != MIKV_OK) throw_status(env, st, s != NULL ? mikv_session_error(s) : mikv_last_error());
}

JNIEXPORT void JNICALL Java_org_mikv_Mikv_nativeSetActiveThreads(JNIEnv* env, jclass cls, jlong handle, jint n) {
  (void)cls;
  mikv_session* s = (mikv_session*)(intptr_t)handle;
  const mikv_status st = mikv_session_set_active_threads(s, (int32_t)n);
  if (st != MIKV_OK) throw_status(env, st, s != NULL ? mikv_session_error(s) : mikv_last_error());
}

JNIEXPORT jint JNICALL Java_org_mikv_Mikv_nativeActiveThreads(JNIEnv* env, jclass cls, jlong handle) {
  (void)cls;
  mikv_session_stats stats;
  return get_stats(env, (const mikv_session*)(intptr_t)handle, &stats) ? (jint)stats.active_threads : 0;
}

JNIEXPORT void JNICALL Java_org_mikv_Mikv_nativeFreeSession(JNIEnv* env, jclass cls, jlong handle) {
  (void)env, (void)cls;
  mikv_session_free((mikv_session*)(intptr_t)handle);
}
