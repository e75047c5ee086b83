/**
 * One of Node's own bindings through process.binding, for the few things
 * vjail's start needs that Node's public modules give only with much more
 * loaded (tty's isatty and child_process's spawn each load net and the
 * streams: ~3-5 ms). process.binding is deprecated: where using it would
 * print a warning (--pending-deprecation), or a binding is missing, this
 * gives undefined and callers use the public module.
 */
export function nodeBinding<T>(name: string): T | undefined {
  const { binding } = process as unknown as { binding?: (name: string) => unknown };
  // Under --pending-deprecation process.binding is wrapped by util.deprecate (named "deprecated").
  if (binding?.name !== 'binding') return undefined;
  try {
    return binding.call(process, name) as T;
  } catch {
    return undefined;
  }
}
