import type { z } from 'zod';

/** The image cannot be written or used; the message is one line saying why. */
export class ImageError extends Error {
  override name = 'ImageError';
}

export function describeIssue(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return 'invalid';
  return `${issue.path.join('.') || '(top)'}: ${issue.message}`;
}

