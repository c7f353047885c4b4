/*
 * verbatim: Vulkan header shim for building whisper.cpp 1.8.3's Vulkan backend against
 * older system headers (Debian 12 ships 1.3.239).
 *
 * ggml-vulkan.cpp defines VK_KHR_shader_bfloat16 itself when the headers lack it, and that
 * fallback block casts to VkComponentTypeKHR, a type that arrived with VK_KHR_cooperative_matrix
 * in headers 1.3.255. On older headers the same enum exists as VkComponentTypeNV (identical
 * values), so this file includes the real header and adds the missing alias. With headers that
 * already have VK_KHR_cooperative_matrix it adds nothing.
 *
 * It is found before the system header because .cargo/config.toml sets
 * CMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES to this folder (whisper-rs-sys passes CMAKE_* to CMake;
 * CMake puts it ahead of the system folders), and it includes the real
 * header with #include_next.
 */
#include_next <vulkan/vulkan_core.h>

#if !defined(VK_KHR_cooperative_matrix) && !defined(VERBATIM_VK_COMPONENT_TYPE_KHR)
#define VERBATIM_VK_COMPONENT_TYPE_KHR 1
typedef VkComponentTypeNV VkComponentTypeKHR;
#endif
