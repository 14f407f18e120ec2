// temporary probe helper (deleted after): build/remove the kernel path between n1 and n2
import { buildKernelPath, kernelEnds, removeKernelPath } from './kernel-path.js';
import { readLabState } from '../src/lab/state.js';
const st = readLabState()!;
const ends = kernelEnds([st.nodes[0]!, st.nodes[1]!]);
if (process.argv[2] === 'up') await buildKernelPath(ends); else console.log(await removeKernelPath(ends));
console.log(JSON.stringify(ends));
