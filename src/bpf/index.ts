// The public surface of src/bpf. Importing it never loads libbpf: that
// happens on the first call that needs the kernel.

export {BpfError, type BpfErrorCode, describeErrno, errnoName} from './errors.js'
export {BpfObject, type BpfProgram, type MapSpec, type OpenOptions} from './object.js'
export {BpfMap, MapType, UpdateFlags, type MapInfo, mapInfoByFd, mapTypeName, possibleCpus} from './map.js'
export {
  type Device,
  type TcAttachOptions,
  type TcDirection,
  type XdpAttachOptions,
  type XdpMode,
  TC_HANDLE,
  TC_PRIORITY,
  attachTc,
  attachXdp,
  attachXdpAsync,
  destroyTcHook,
  detachTc,
  detachXdp,
  ifindexOf,
  tcAttachedId,
  xdpAttachedId,
} from './attach.js'
export {Btf, BtfKind, type MemberLayout, type StructLayout, enumValues, structLayout} from './btf.js'
export {type TestRunOptions, type TestRunResult, testRun} from './testrun.js'
export {type Features, type Probe, libbpfVersion, probeFeatures} from './features.js'
export {
  BPFFS,
  PIN_BASE,
  assertNodeName,
  bpffsMounts,
  ensureBpffs,
  isBpffsMounted,
  isValidNodeName,
  nodePinDir,
  removeNodePins,
} from './pins.js'
export * from './codecs.js'
export {checkCodecs, checkStructLayout} from './layout-check.js'
export {MAP_OWNERSHIP, type MapOwner, type MapRule} from './ownership.js'
export {COUNTER_NAMES, type CounterName, type Counters, addToCounters, counterEnumName, readCounters} from './counters.js'
export {
  LAYOUT_STEPS,
  LAYOUT_VERSION,
  LayoutUpgrade,
  OLDEST_SEAMLESS,
  conversionPath,
  type EntryConverter,
  type LayoutStep,
  type LayoutSteps,
  type OldLayout,
  type UpgradeReport,
  layoutPinDir,
  oldLayouts,
  retireOldLayouts,
} from './upgrade.js'
