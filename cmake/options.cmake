# cogwheel_options: compile options every target of ours links.
add_library(cogwheel_options INTERFACE)
target_compile_options(cogwheel_options INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
  -Wunused -Woverloaded-virtual -Wimplicit-fallthrough
  # No -Wnull-dereference: at -O2 GCC 12 reports it inside Asio's inlined epoll reactor
  # (scheduler.ipp, thread_info) for any TU that runs a resolver or socket; not our code.
  # GCC 12 misreads Asio's coroutine frame allocator (aligned_new with a sized delete) as a
  # mismatched new/delete once handlers are inlined; a known false positive, not our code.
  -Wno-mismatched-new-delete
  $<$<BOOL:${COGWHEEL_WERROR}>:-Werror>)
target_compile_definitions(cogwheel_options INTERFACE
  BOOST_ASIO_NO_DEPRECATED)
if(COGWHEEL_SANITIZE)
  target_compile_options(cogwheel_options INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_link_options(cogwheel_options INTERFACE -fsanitize=address,undefined)
endif()
