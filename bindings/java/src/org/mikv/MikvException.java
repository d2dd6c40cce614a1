package org.mikv;

/** A mikv call failed: {@code status} is the C API's status name (e.g. "MIKV_ERR_CORRUPT"). */
public final class MikvException extends RuntimeException {
  public final String status;

  public MikvException(String status, String message) {
    super(status + ": " + message);
    this.status = status;
  }
}
