/**
 * A minimal streaming ZIP writer (stored, no compression: frames are PNG/EXR/MP4, which
 * are compressed already). Files are streamed from disk; memory stays bounded. Uses
 * ZIP64 only when needed is out of scope: the archive refuses files or totals ≥ 4 GiB
 * with a clear error rather than writing a corrupt archive.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { once } from 'node:events'
import { crc32 } from 'node:zlib'
import { InvalidInputError } from '../util/errors.js'

const LIMIT = 0xffff_fffe

export async function writeZip(
  dest: string,
  files: { name: string; path: string }[],
): Promise<{ bytes: number }> {
  const out = createWriteStream(dest)
  let offset = 0
  const central: Buffer[] = []
  const write = async (buf: Buffer) => {
    offset += buf.length
    if (!out.write(buf)) await once(out, 'drain')
  }
  try {
    for (const f of files) {
      const size = (await stat(f.path)).size
      if (size > LIMIT || offset + size > LIMIT)
        throw new InvalidInputError(
          'the ZIP would be over 4 GiB; fetch into a folder instead (without --zip)',
        )
      let crc = 0
      for await (const chunk of createReadStream(f.path)) crc = crc32(chunk as Buffer, crc)
      const name = Buffer.from(f.name, 'utf8')
      const header = Buffer.alloc(30)
      header.writeUInt32LE(0x04034b50, 0)
      header.writeUInt16LE(20, 4)
      header.writeUInt16LE(0x0800, 6) // UTF-8 names
      header.writeUInt16LE(0, 8) // stored
      header.writeUInt32LE(crc >>> 0, 14)
      header.writeUInt32LE(size, 18)
      header.writeUInt32LE(size, 22)
      header.writeUInt16LE(name.length, 26)
      const localOffset = offset
      await write(header)
      await write(name)
      for await (const chunk of createReadStream(f.path)) await write(chunk as Buffer)
      const entry = Buffer.alloc(46)
      entry.writeUInt32LE(0x02014b50, 0)
      entry.writeUInt16LE(20, 4)
      entry.writeUInt16LE(20, 6)
      entry.writeUInt16LE(0x0800, 8)
      entry.writeUInt32LE(crc >>> 0, 16)
      entry.writeUInt32LE(size, 20)
      entry.writeUInt32LE(size, 24)
      entry.writeUInt16LE(name.length, 28)
      entry.writeUInt32LE(localOffset, 42)
      central.push(entry, name)
    }
    const cdStart = offset
    for (const b of central) await write(b)
    const end = Buffer.alloc(22)
    end.writeUInt32LE(0x06054b50, 0)
    end.writeUInt16LE(files.length, 8)
    end.writeUInt16LE(files.length, 10)
    end.writeUInt32LE(offset - cdStart, 12)
    end.writeUInt32LE(cdStart, 16)
    await write(end)
  } finally {
    out.end()
    await once(out, 'close')
  }
  return { bytes: offset }
}
