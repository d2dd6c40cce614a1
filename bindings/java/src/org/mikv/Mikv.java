package org.mikv;

/**
 * The Java binding of mikv (for Android apps and the JVM): a model loaded once, sessions that generate text.
 * Every native failure becomes a {@link MikvException} carrying mikv's status name and message.
 * Threads: a Model may be shared; a Session belongs to one thread at a time.
 */
public final class Mikv {
  static {
    System.loadLibrary("mikv_jni");
  }

  private Mikv() {}

  /** A loaded .mikv model. Close it after its sessions. */
  public static final class Model implements AutoCloseable {
    long handle;

    public Model(String path) {
      handle = nativeLoad(path);
    }

    public int vocabSize() {
      return nativeVocabSize(handle);
    }

    @Override
    public void close() {
      nativeFreeModel(handle);
      handle = 0;
    }
  }

  /** Streams generated text, piece by piece; return false to stop. */
  public interface TokenListener {
    boolean onText(String piece);
  }

  /** One conversation. All its memory is taken when it is created. */
  public static final class Session implements AutoCloseable {
    long handle;
    private final Model model;

    /**
     * @param kvConfig a policy ("plain", "full", "uniform", "h2o", "sinks", "mikv") or a whole cache in the form
     *     {@code mikv budget} proposes and {@code mikv run --kv-config} takes, e.g.
     *     "mikv/int8@0.01/k4v2:g64/int2:g64+rot" (runtime/kv_config.h has the grammar)
     * @param kvBudgetBytes KV memory for the mixed cache (0 = sized to the context)
     */
    public Session(Model model, int context, int threads, String kvConfig, long kvBudgetBytes) {
      this(model, context, threads, kvConfig, kvBudgetBytes, true);
    }

    /** @param balanceKeys the per-channel key balancer ({@code mikv budget}'s proposals turn it off) */
    public Session(Model model, int context, int threads, String kvConfig, long kvBudgetBytes, boolean balanceKeys) {
      this.model = model;
      handle = nativeCreate(model.handle, context, threads, kvConfig, kvBudgetBytes, balanceKeys);
    }

    /** Greedy (temperature 0) continuation of the prompt, at most maxTokens tokens. */
    public String generate(String prompt, int maxTokens, TokenListener listener) {
      return nativeGenerate(model.handle, handle, prompt, maxTokens, listener);
    }

    public void reset() {
      nativeReset(handle);
    }

    /**
     * Each thread's share of the projections' rows now, one per thread, summing to 1. A session decodes its layers on
     * all threads at once (in lockstep) where the model's projections are q8_0 or q4_0; each thread's share then
     * follows its pace. Elsewhere there are no shares: MikvException (MIKV_ERR_INVALID_ARGUMENT).
     */
    public double[] threadShares() {
      return nativeThreadShares(handle);
    }

    /**
     * Sets the shares in proportion to {@code weights}, one per thread, each positive and finite: where the cores are
     * known to differ, as a big and a little core ({@code {2, 1}}: the first thread takes two thirds of the rows).
     * The session's balancing moves them on from there. The text is the same whatever the shares.
     */
    public void setThreadShares(double[] weights) {
      nativeSetThreadShares(handle, weights);
    }

    /**
     * Runs the next steps on the first {@code n} of the session's threads, the others asleep: where the app knows that
     * cores are taken (it went to the background, say). The session also finds this out by itself, trying one thread
     * fewer (or more) now and then and keeping the faster count. The text is the same whatever the count.
     */
    public void setActiveThreads(int n) {
      nativeSetActiveThreads(handle, n);
    }

    /** The threads the next step runs on. */
    public int activeThreads() {
      return nativeActiveThreads(handle);
    }

    @Override
    public void close() {
      nativeFreeSession(handle);
      handle = 0;
    }
  }

  static native long nativeLoad(String path);
  static native int nativeVocabSize(long model);
  static native void nativeFreeModel(long model);
  static native long nativeCreate(long model, int context, int threads, String kvConfig, long kvBudgetBytes,
                                  boolean balanceKeys);
  static native String nativeGenerate(long model, long session, String prompt, int maxTokens, TokenListener listener);
  static native void nativeReset(long session);
  static native double[] nativeThreadShares(long session);
  static native void nativeSetThreadShares(long session, double[] weights);
  static native void nativeSetActiveThreads(long session, int n);
  static native int nativeActiveThreads(long session);
  static native void nativeFreeSession(long session);
}
