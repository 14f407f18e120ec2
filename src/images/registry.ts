/**
 * Images on a registry (HOST/NAME:TAG, docker://... as skopeo spells it), through skopeo: a tag
 * resolved to its manifest digest (the manager does it when a service is created or its image
 * changed, so every node runs the same image, as Docker pins a service's tag), and an image
 * copied by digest into a node's store. TLS is verified unless the service says
 * --tls-verify=false (a plain-HTTP registry: Docker's insecure-registries, podman's word).
 */
import {createHash} from 'node:crypto'
import {ExecError, run} from '../sys/exec.js'

/** skopeo's one line of why, without its log prefix: `reading manifest 1 in HOST/NAME: manifest unknown`. */
function skopeoWhy(e: unknown): string {
  if (!(e instanceof ExecError)) return (e as Error).message
  const fatal = e.stderr.split('\n').find((l) => l.includes('level=fatal')) ?? ''
  const msg = /msg="((?:[^"\\]|\\.)*)"/.exec(fatal)?.[1]
  if (!msg) return e.message
  return msg.replace(/\\(.)/g, '$1').replace(/^Error parsing image name "[^"]*": /, '')
}

const tls = (flag: string, verify: boolean) => `--${flag}=${verify ? 'true' : 'false'}`

/** The sha256 digest of the manifest (or index) NAME:TAG names now on its registry. */
export async function remoteDigest(name: string, tagOrDigest: string, tlsVerify: boolean): Promise<string> {
  const sep = tagOrDigest.startsWith('sha256:') ? '@' : ':'
  const ref = `${name}${sep}${tagOrDigest}`
  let raw: string
  try {
    // --raw: the bytes as the registry serves them, whose hash is the digest Docker pins (an index's for a multi-platform image).
    raw = await run(['skopeo', 'inspect', '--raw', tls('tls-verify', tlsVerify), `docker://${ref}`], `inspecting ${ref}`, {
      timeoutMs: 60_000,
    })
  } catch (e) {
    throw new Error(`image ${ref}: ${skopeoWhy(e)}`)
  }
  return `sha256:${createHash('sha256').update(raw).digest('hex')}`
}

/** Copies NAME@DIGEST from its registry into the OCI layout as tag. */
export async function pullByDigest(layout: string, name: string, digest: string, tag: string, tlsVerify: boolean): Promise<void> {
  const ref = `${name}@${digest}`
  try {
    await run(
      [
        'skopeo',
        '--insecure-policy',
        'copy',
        '--quiet',
        tls('src-tls-verify', tlsVerify),
        `docker://${ref}`,
        `oci:${layout}:${tag}`,
      ],
      `pulling ${ref}`,
      {timeoutMs: 600_000},
    )
  } catch (e) {
    throw new Error(`image ${ref}: cannot pull: ${skopeoWhy(e)}`)
  }
}
