// `bantay match --video FILE | --video-hashes FILE --vpdq REF...`: whole-video
// matching against vPDQ hash files (see the usage text in the .cc).
#ifndef BANTAY_CLIENT_VIDEO_MATCH_COMMAND_H_
#define BANTAY_CLIENT_VIDEO_MATCH_COMMAND_H_

#include <ostream>
#include <string>
#include <vector>

namespace bantay::client {

// Whether `bantay match` was given the video form (--video or --video-hashes).
bool IsVideoMatch(const std::vector<std::string>& args);

// Runs it; the exit status as for the other forms of `bantay match`.
int RunVideoMatch(const std::vector<std::string>& args, std::ostream& out,
                  std::ostream& err);

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_VIDEO_MATCH_COMMAND_H_
