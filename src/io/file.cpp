// Reading regular files and writing files atomically (see include/longctx/io/file.h).
#include "longctx/io/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "longctx/error.h"

namespace longctx {

namespace {

std::string errno_text() {
  return std::strerror(errno);
}

// What a file that is not a regular file is, for the message refusing it.
const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

std::string directory_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_name(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

constexpr const char* kTempInfix = ".tmp";

}  // namespace

// ---- reading -----------------------------------------------------------------------------------

InputFile::InputFile(const std::string& path, const std::string& who) : path_(path), who_(who) {
  // Refused before open(): opening a FIFO for reading blocks until a writer appears.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw Error(detail::concat(who, ": ", path, ": cannot open: ", errno_text()));
  if (!S_ISREG(st.st_mode))
    throw Error(
        detail::concat(who, ": ", path, ": not a regular file (", kind_of(st.st_mode), ")"));
  // O_NONBLOCK: should the path have become a FIFO since, open() still returns at once.
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) throw Error(detail::concat(who, ": ", path, ": cannot open: ", errno_text()));
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw Error(detail::concat(who, ": ", path, ": not a regular file"));
  }
  size_ = uint64_t(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InputFile::read_at(void* dst, uint64_t bytes, uint64_t offset) const {
  char* p = static_cast<char*>(dst);
  while (bytes > 0) {
    const size_t chunk = size_t(std::min<uint64_t>(bytes, uint64_t(1) << 30));
    const ssize_t got = ::pread(fd_, p, chunk, off_t(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw Error(detail::concat(who_, ": ", path_, ": read failed: ", errno_text()));
    if (got == 0)
      throw Error(detail::concat(who_, ": ", path_,
                                 ": unexpected end of file (did it shrink while being read?)"));
    p += got;
    bytes -= uint64_t(got);
    offset += uint64_t(got);
  }
}

std::string read_file(const std::string& path, const std::string& who, uint64_t max_bytes) {
  const InputFile f(path, who);
  LONGCTX_CHECK(f.size() <= max_bytes, who, ": ", path, " has ", f.size(),
                " bytes, more than the limit of ", max_bytes);
  std::string bytes(size_t(f.size()), '\0');
  f.read_at(bytes.data(), f.size(), 0);
  return bytes;
}

// ---- writing -----------------------------------------------------------------------------------

void check_replaceable(const std::string& path, const std::string& who) {
  LONGCTX_CHECK(!path.empty() && path.back() != '/', who, ": '", path, "' is not a file path");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw Error(detail::concat(who, ": '", path, "' is ", kind_of(st.st_mode),
                               ", not a regular file: refusing to replace it"));
}

AtomicFile::AtomicFile(const std::string& path, const std::string& who) : path_(path), who_(who) {
  check_replaceable(path, who);
  // A fresh name beside the target (same file system, so rename is atomic). O_EXCL with the
  // process id, the time and a counter: no two writers in this or another process share one.
  static std::atomic<uint64_t> counter{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  for (int attempt = 0; fd_ < 0; ++attempt) {
    tmp_ = detail::concat(path, kTempInfix, ".", ::getpid(), ".", now, ".", counter++);
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0 && (errno != EEXIST || attempt > 100))
      throw Error(detail::concat(who, ": cannot create a temporary file beside '", path,
                                 "': ", errno_text()));
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t bytes) {
  LONGCTX_CHECK(fd_ >= 0 && !committed_, who_, ": write to '", path_, "' after commit");
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t put = ::write(fd_, p, std::min<size_t>(bytes, size_t(1) << 30));
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) throw Error(detail::concat(who_, ": writing '", tmp_, "' failed: ", errno_text()));
    p += put;
    bytes -= size_t(put);
  }
}

void AtomicFile::commit() {
  LONGCTX_CHECK(fd_ >= 0 && !committed_, who_, ": '", path_, "' committed twice");
  if (::fsync(fd_) != 0)
    throw Error(detail::concat(who_, ": fsync of '", tmp_, "' failed: ", errno_text()));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0)
    throw Error(detail::concat(who_, ": closing '", tmp_, "' failed: ", errno_text()));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw Error(
        detail::concat(who_, ": renaming '", tmp_, "' to '", path_, "' failed: ", errno_text()));
  committed_ = true;
  // Make the rename itself durable. The new file is complete either way, so a failure here is
  // not worth an exception (some file systems refuse fsync on directories).
  const int dir = ::open(directory_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomically(const std::string& path, std::string_view bytes,
                           const std::string& who) {
  AtomicFile f(path, who);
  f.write(bytes);
  f.commit();
}

void remove_stale_temporaries(const std::string& path) {
  const std::string prefix = base_name(path) + kTempInfix, dir = directory_of(path);
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    // <path>.tmp.<pid>.<time>.<n>, and the fixed <path>.tmp of writers before this one.
    if (name == prefix || name.rfind(prefix + ".", 0) == 0) ::unlink((dir + "/" + name).c_str());
  }
  ::closedir(d);
}

}  // namespace longctx
