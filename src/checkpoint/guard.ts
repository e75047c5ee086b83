export const guardNote = {
  dirty(_pid: number, _own: unknown, _nr: number): void {},
  clean(_pid: number): void {},
  mask(_pid: number, _mask: bigint): void {},
  released(_pid: number): void {},
};
