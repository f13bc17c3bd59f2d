// Whole files, read and written the one way every longctx tool does.
//
// Reading takes regular files only: a FIFO or a device named as an input would block open()
// forever or never end, so it is refused before it is opened (and checked again once open).
//
// Writing is atomic and checked: the bytes go to a fresh temporary file beside the target
// (`<path>.tmp.<pid>.<time>.<n>`, same file system), which is written, fsync'ed, closed and
// renamed over the target, then the directory is fsync'ed. Every step's failure (a full disk, a
// read-only or missing directory) is an Error and leaves any previous file at the path as it was.
// A path that exists but is not a regular file (a symlink, a device node, a directory) is
// refused rather than replaced.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace longctx {

// A regular file open for reading. Throws Error "<who>: <path>: ..." when the path does not
// exist, cannot be opened, or is not a regular file.
class InputFile {
 public:
  InputFile(const std::string& path, const std::string& who);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }  // when opened
  // Reads `bytes` bytes at `offset`; Error on a read error or an early end (a file that shrank).
  void read_at(void* dst, uint64_t bytes, uint64_t offset) const;

 private:
  std::string path_, who_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// The whole content of a regular file of at most `max_bytes` bytes (Error naming the limit).
std::string read_file(const std::string& path, const std::string& who,
                      uint64_t max_bytes = UINT64_MAX);

// Error "<who>: '<path>' is a symbolic link, not a regular file: refusing to replace it" (or a
// directory, a FIFO, ...) unless `path` is absent or a regular file: what AtomicFile checks of
// its target, for a caller that must know before it starts work whose result it will save there.
void check_replaceable(const std::string& path, const std::string& who);

// An atomic write in progress: write() appends to the temporary file, commit() puts it in place.
// Destroyed without commit() (an exception on the way), it removes its temporary file.
class AtomicFile {
 public:
  // Checks the target and creates the temporary file; Error "<who>: ..." when it cannot.
  AtomicFile(const std::string& path, const std::string& who);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void write(std::string_view text) { write(text.data(), text.size()); }
  void commit();  // fsync, close, rename over the target, fsync the directory

 private:
  std::string path_, tmp_, who_;
  int fd_ = -1;
  bool committed_ = false;
};

// The whole of `bytes` as the new content of `path`, atomically (see AtomicFile).
void write_file_atomically(const std::string& path, std::string_view bytes, const std::string& who);

// Removes the temporary files that writers of `path` killed mid-write left beside it (a kill -9
// during a checkpoint leaves one the size of the checkpoint). Only for a caller that knows no
// other process is writing `path` now (train holds its run directory's lock).
void remove_stale_temporaries(const std::string& path);

}  // namespace longctx
