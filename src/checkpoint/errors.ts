/**
 * Why a checkpoint did not happen. A module of its own with no imports, so
 * that everything below the checkpoint (tracee, interrupt, the parts) can
 * throw these without pulling the rest of the checkpoint in (an import
 * cycle leaves a class undefined while its module is still loading).
 */

/** The process cannot be checkpointed as asked; it was not touched. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/** The jail holds state a checkpoint cannot save (the external-state step refused); `lines` name it, per process. */
export class ExternalStateError extends CheckpointError {
  override name = 'ExternalStateError';
  constructor(
    message: string,
    readonly lines: string[],
  ) {
    super(message);
  }
}

/** The process uses something this version cannot save; it was left running. */
export class CheckpointUnsupported extends Error {
  override name = 'CheckpointUnsupported';
}
