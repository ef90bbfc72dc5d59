// POSIX ACLs travel in tars as the Linux VFS xattr (system.posix_acl_access/default, version 2,
// 8-byte entries) but ext4 stores its own, shorter form (version 1, 4-byte entries for the
// owner/group/mask/other tags). Writing the VFS bytes verbatim would make the kernel reject them.
import { VhdError } from "../errors.js";

const VFS_VERSION = 2;
const EXT4_VERSION = 1;
const ACL_USER = 0x02;
const ACL_GROUP = 0x08;

/** Converts a VFS-format ACL xattr value to ext4's on-disk format. */
export function vfsAclToExt4(value: Uint8Array, where: string): Uint8Array {
  const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (value.length < 4 || (value.length - 4) % 8 !== 0 || v.getUint32(0, true) !== VFS_VERSION) {
    throw new VhdError("TAR_ENTRY_INVALID", `${where}: POSIX ACL xattr is not in the Linux VFS format (version 2)`, { path: where });
  }
  const count = (value.length - 4) / 8;
  const parts: number[][] = [];
  let size = 4;
  for (let i = 0; i < count; i++) {
    const at = 4 + i * 8;
    const tag = v.getUint16(at, true);
    const perm = v.getUint16(at + 2, true);
    const id = v.getUint32(at + 4, true);
    const withId = tag === ACL_USER || tag === ACL_GROUP;
    parts.push(withId ? [tag, perm, id] : [tag, perm]);
    size += withId ? 8 : 4;
  }
  const out = new Uint8Array(size);
  const o = new DataView(out.buffer);
  o.setUint32(0, EXT4_VERSION, true); // a_version
  let at = 4;
  for (const [tag, perm, id] of parts) {
    o.setUint16(at, tag!, true); // e_tag
    o.setUint16(at + 2, perm!, true); // e_perm
    if (id !== undefined) {
      o.setUint32(at + 4, id, true); // e_id
      at += 8;
    } else {
      at += 4;
    }
  }
  return out;
}

/** The reverse, for readers that hand ACLs back to Linux or to a tar. */
export function ext4AclToVfs(value: Uint8Array): Uint8Array {
  const v = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (value.length < 4 || v.getUint32(0, true) !== EXT4_VERSION) throw new VhdError("FORMAT_INVALID", "ext4 ACL: bad version");
  const entries: [number, number, number][] = [];
  let at = 4;
  while (at + 4 <= value.length) {
    const tag = v.getUint16(at, true);
    const perm = v.getUint16(at + 2, true);
    if (tag === ACL_USER || tag === ACL_GROUP) {
      if (at + 8 > value.length) throw new VhdError("FORMAT_INVALID", "ext4 ACL: truncated entry");
      entries.push([tag, perm, v.getUint32(at + 4, true)]);
      at += 8;
    } else {
      entries.push([tag, perm, 0xffffffff]);
      at += 4;
    }
  }
  const out = new Uint8Array(4 + entries.length * 8);
  const o = new DataView(out.buffer);
  o.setUint32(0, VFS_VERSION, true);
  entries.forEach(([tag, perm, id], i) => {
    o.setUint16(4 + i * 8, tag, true);
    o.setUint16(6 + i * 8, perm, true);
    o.setUint32(8 + i * 8, id, true);
  });
  return out;
}
