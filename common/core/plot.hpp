#pragma once
/// @file plot.hpp
/// @brief Small SVG figures: a line chart (loss curves, memory and timing figures in the lessons)
/// and a per-rank timeline of trace events.

#include <string>
#include <vector>

#include "core/trace.hpp"

namespace sgpt {

/// One line of a chart: points (x[i], y[i]), drawn in `color` (any SVG colour).
struct PlotSeries {
  std::string label;               ///< name shown in the legend
  /// x coordinates of the points.
  std::vector<double> x, y;        ///< y coordinates of the points (same length as x)
  std::string color = "#1f77b4";   ///< stroke colour of the line and markers (any SVG colour)
  bool markers = false;  ///< draw a dot on every point (for sparse series such as validation loss)
};

/// Renders the series as a standalone SVG document with axes, ticks, labels and a legend.
std::string line_chart_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                           const std::vector<PlotSeries>& series, int width = 720, int height = 420);

/// Renders trace events as a timeline: one lane per (rank, track), one bar per event from its
/// start to its end, coloured by category (compute blue, comm orange, idle grey), with the time
/// axis in milliseconds from the earliest event. Events shorter than a pixel are still drawn one
/// pixel wide. Returns a standalone SVG document.
std::string timeline_svg(const std::string& title, const std::vector<TraceEvent>& events, int width = 900);

}  // namespace sgpt
