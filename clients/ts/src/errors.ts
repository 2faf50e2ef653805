// The hub's errors as data: every error status the hub returns carries a
// google.rpc.ErrorInfo with domain errorDomain and, as its reason, the name
// of an ErrorReason value (errors_pb.ts).
import {ConnectError} from "@connectrpc/connect";
import {ErrorInfoSchema, type ErrorInfo} from "./gen/google/rpc/error_details_pb.js";
import {ErrorReason} from "./gen/passerelle/hub/v1/errors_pb.js";

/** The domain of the hub's ErrorInfo. */
export const errorDomain = "hub.passerelle.dev";

/**
 * The hub's ErrorInfo of a failed call, or undefined for an error the
 * client made itself (a deadline, a cancel, a lost connection).
 */
export function errorInfo(err: unknown): ErrorInfo | undefined {
  return ConnectError.from(err).findDetails(ErrorInfoSchema).find((info) => info.domain === errorDomain);
}

/**
 * The hub's reason for a failed call, as an ErrorReason value
 * (ErrorReason.ERROR_REASON_UNSPECIFIED when the hub gave none).
 */
export function errorReason(err: unknown): ErrorReason {
  const reason = errorInfo(err)?.reason;
  const value = reason === undefined ? undefined : (ErrorReason as unknown as Record<string, number | undefined>)[reason];
  return value ?? ErrorReason.ERROR_REASON_UNSPECIFIED;
}
