// Whole-file I/O (longctx/io/file.h): inputs that are not regular files are refused without
// blocking, writes are atomic and refuse to replace what is not a regular file, failures are
// errors naming the path, and a killed writer's temporaries can be cleaned up.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "harness.h"
#include "longctx/io/file.h"

namespace longctx::test {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(File, ReadsRegularFilesAndBoundsTheirSize) {
  TempDir dir;
  std::ofstream(dir.file("a.txt")) << "hello";
  EXPECT_EQ(read_file(dir.file("a.txt"), "test"), "hello");
  EXPECT_LONGCTX_ERROR(read_file(dir.file("a.txt"), "test", 4), "test: ", "a.txt has 5 bytes",
                       "limit of 4");
  EXPECT_LONGCTX_ERROR(read_file(dir.file("absent"), "test"), "test: ", "absent: cannot open",
                       "No such file");
  EXPECT_LONGCTX_ERROR(read_file(dir.path(), "test"), "not a regular file (a directory)");
}

// A FIFO as an input blocked open() forever (`--in`, `--text`); it is refused at once.
TEST(File, RefusesAFifoWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  EXPECT_LONGCTX_ERROR(read_file(dir.file("fifo"), "test"), "fifo: not a regular file (a FIFO)");
  EXPECT_LONGCTX_ERROR(InputFile(dir.file("fifo"), "test"), "a FIFO");
  EXPECT_LONGCTX_ERROR(read_file("/dev/null", "test"), "a character device");
}

TEST(File, AtomicWriteReplacesTheWholeFile) {
  TempDir dir;
  const std::string path = dir.file("out.json");
  write_file_atomically(path, "first version, longer", "test");
  write_file_atomically(path, "second", "test");
  EXPECT_EQ(slurp(path), "second");
  {
    AtomicFile f(path, "test");
    f.write("abandoned");  // destroyed without commit: the old file stays, the temporary goes
  }
  EXPECT_EQ(slurp(path), "second");
  EXPECT_EQ(dir.files(), std::vector<std::string>{"out.json"});
}

// `op --out` replaced a symlink or a device node at the path; a write now refuses any target
// that is not a regular file, and leaves it (and what a link points to) untouched.
TEST(File, AtomicWriteRefusesTargetsThatAreNotRegularFiles) {
  TempDir dir;
  std::ofstream(dir.file("target.txt")) << "keep me";
  ASSERT_EQ(::symlink(dir.file("target.txt").c_str(), dir.file("link").c_str()), 0);
  EXPECT_LONGCTX_ERROR(write_file_atomically(dir.file("link"), "x", "test"),
                       "link' is a symbolic link, not a regular file: refusing to replace it");
  EXPECT_EQ(slurp(dir.file("target.txt")), "keep me");
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  EXPECT_LONGCTX_ERROR(write_file_atomically(dir.file("fifo"), "x", "test"), "is a FIFO");
  EXPECT_LONGCTX_ERROR(write_file_atomically(dir.path(), "x", "test"), "is a directory");
  EXPECT_LONGCTX_ERROR(write_file_atomically(dir.file("missing/out.json"), "x", "test"),
                       "test: cannot create a temporary file beside", "No such file");
  EXPECT_LONGCTX_ERROR(write_file_atomically("", "x", "test"), "is not a file path");
  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(dir.files(), (std::vector<std::string>{"fifo", "link", "target.txt"}));
}

// A kill -9 during a write leaves <path>.tmp.<...>; remove_stale_temporaries clears exactly
// those of the given path.
TEST(File, StaleTemporariesAreRemoved) {
  TempDir dir;
  const std::string path = dir.file("checkpoint.safetensors");
  for (const char* name : {"checkpoint.safetensors", "checkpoint.safetensors.tmp.123.456.0",
                           "checkpoint.safetensors.tmp", "checkpoint.safetensors.tmpl",
                           "options.json.tmp.1.2.3", "log.jsonl"})
    std::ofstream(dir.file(name)) << "x";
  remove_stale_temporaries(path);
  EXPECT_EQ(dir.files(),
            (std::vector<std::string>{"checkpoint.safetensors", "checkpoint.safetensors.tmpl",
                                      "log.jsonl", "options.json.tmp.1.2.3"}));
}

}  // namespace
}  // namespace longctx::test
