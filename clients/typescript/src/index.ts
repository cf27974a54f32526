/**
 * The nanocdn client, runtime-neutral (fetch and web streams only):
 * `import { NanoCdnClient } from "nanocdn/client"`.
 */
export {
  NanoCdnClient,
  type Namespace,
  type NanoCdnClientOptions,
  type NanoCdnFile,
  type NanoCdnFileInfo,
  type PutOptions,
  type PutResult,
  type RequestOptions,
  type SignUrlOptions,
} from "./client.ts";
export type { UploadBody } from "./body.ts";
export { signingKey, signPath, urlSignature } from "./signing.ts";
export {
  type NanoCdnAttempt,
  NanoCdnConflictError,
  NanoCdnError,
  NanoCdnNotFoundError,
  NanoCdnTooLargeError,
  NanoCdnUnauthorizedError,
  NanoCdnUnavailableError,
  NanoCdnUncertainUploadError,
} from "./errors.ts";
