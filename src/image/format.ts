/**
 * The checkpoint image format, one module per concern:
 *   schema.ts    what an image holds (the only data definitions)
 *   upgrade.ts   older versions turned into the current shape
 *   write.ts     ImageWriter: page files, manifest, publish by rename
 *   read.ts      openImage: verify and read
 *   pagedata.ts  page buffers and off-thread sha256
 *   sign.ts      SIGNATURE: who vouches for an image
 *   stream.ts    an image as one stream: frames, sources and sinks
 *   codec.ts     the stream's compression and encryption, key files
 *   packed.ts    packed (compressed/encrypted) image directories
 * Checkpoint and restore import this door only.
 */
export * from './schema.js';
export { ImageError } from './errors.js';
export { OffThreadHash, PAGE_BUFFER_SIZE, pageBuffer, readFileOffThread, sha256Fd, sha256File, treeDigest } from './pagedata.js';
export { ImageWriter, PageFileWriter } from './write.js';
export { authenticate, type Authentication, checkSignKey, describeSignature, SIGNATURE_FILE } from './sign.js';
export { chunkSums, openImage, openImageFile, openPageFile, type OpenedImage, pagesPath, readBlob, treeHashed, verifyPageFiles } from './read.js';
export { type Compression, COMPRESSIONS, KEY_BYTES, readKeyFile } from './codec.js';
export { dirSource, DirSink, type ImageSink, type ImageSource, readImageStream, receiveImage, type SourceFile, type StreamOptions, type StreamTotals, writeImageStream } from './stream.js';
export { isPackedImage, PACKED_FILE, packImage, removeTempImage, tempImageDir, unpackImage } from './packed.js';
