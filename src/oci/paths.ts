/** Files of the package vjail-oci runs. */
import { dataPath } from '../paths.js';

export const setupPath = (): string => dataPath('build', 'Release', 'vjail-oci-setup');
export const binPath = (): string => dataPath('bin', 'vjail-oci.js');
